package devtoken_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"todo-chatbot/gateway/internal/devtoken"
)

const key = "0123456789abcdef0123456789abcdef-key"

var issued = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

func signer() *devtoken.Signer { return devtoken.NewSigner(key, func() time.Time { return issued }) }

func TestTokenIsAnHS256JWTWithTheKitsClaims(t *testing.T) {
	token, err := signer().Sign("alice")
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(token.Token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %s", token.Token)
	}
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write([]byte(parts[0] + "." + parts[1]))
	if base64.RawURLEncoding.EncodeToString(mac.Sum(nil)) != parts[2] {
		t.Fatal("the signature is not HMAC-SHA256 of the key")
	}
	var header map[string]string
	var claims map[string]any
	decode(t, parts[0], &header)
	decode(t, parts[1], &claims)
	if header["alg"] != "HS256" {
		t.Fatalf("header %v", header)
	}
	want := map[string]any{"sub": "alice", "iss": "todo-chatbot", "aud": "todo",
		"iat": float64(issued.Unix()), "exp": float64(issued.Add(12 * time.Hour).Unix())}
	if len(claims) != len(want) {
		t.Fatalf("claims %v, want %v", claims, want)
	}
	for name, value := range want {
		if claims[name] != value {
			t.Fatalf("claim %s = %v, want %v", name, claims[name], value)
		}
	}
	if token.ExpiresAt != "2026-11-30T00:00:00Z" || token.UserID != "alice" {
		t.Fatalf("answer %+v", token)
	}
}

func decode(t *testing.T, part string, into any) {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(part)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, into); err != nil {
		t.Fatal(err)
	}
}

func TestUserIDsOutsideThePatternAreRefused(t *testing.T) {
	for _, userID := range []string{"", "alice\n", "al ice", "<script>", strings.Repeat("a", 129), "ali\u00e7e"} {
		if _, err := signer().Sign(userID); err == nil {
			t.Errorf("%q must be refused", userID)
		}
	}
	for _, userID := range []string{"a", "alice@example.com", "x.y_z:1+2-3", strings.Repeat("a", 128)} {
		if _, err := signer().Sign(userID); err != nil {
			t.Errorf("%q must be accepted: %v", userID, err)
		}
	}
}

func post(t *testing.T, method, body string) *httptest.ResponseRecorder {
	t.Helper()
	recorder := httptest.NewRecorder()
	signer().ServeHTTP(recorder, httptest.NewRequest(method, "/v1/dev/token", strings.NewReader(body)))
	return recorder
}

func TestEndpointAnswersATokenAndRefusesBadBodies(t *testing.T) {
	ok := post(t, http.MethodPost, `{"user_id": "bob"}`)
	var answer devtoken.Token
	if ok.Code != http.StatusOK || json.Unmarshal(ok.Body.Bytes(), &answer) != nil || answer.UserID != "bob" || answer.Token == "" {
		t.Fatalf("got %d %s", ok.Code, ok.Body)
	}
	for _, body := range []string{`{"user_id": "bad id"}`, `{}`, `not json`, `{"user_id": "bob", "admin": true}`} {
		reply := post(t, http.MethodPost, body)
		var errBody struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		}
		if reply.Code != http.StatusBadRequest || json.Unmarshal(reply.Body.Bytes(), &errBody) != nil || errBody.Code != 3 {
			t.Errorf("%s: got %d %s", body, reply.Code, reply.Body)
		}
	}
	if reply := post(t, http.MethodGet, ""); reply.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET: got %d", reply.Code)
	}
}

func TestKeyFileIsReadWithoutSurroundingWhitespaceAndMustBeLongEnough(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "jwt-signing-key")
	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fromFile, err := devtoken.LoadKey(path)
	if err != nil {
		t.Fatal(err)
	}
	token, _ := fromFile.Sign("alice")
	parts := strings.Split(token.Token, ".")
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write([]byte(parts[0] + "." + parts[1]))
	if base64.RawURLEncoding.EncodeToString(mac.Sum(nil)) != parts[2] {
		t.Fatal("the key file's trailing newline must not be part of the key")
	}
	if err := os.WriteFile(path, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := devtoken.LoadKey(path); err == nil {
		t.Fatal("a short key must be refused")
	}
	if _, err := devtoken.LoadKey(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("a missing key file must be refused")
	}
}
