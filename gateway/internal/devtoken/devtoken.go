// Package devtoken is the embedded default's "sign in as a name": POST /v1/dev/token signs a bearer token for any
// user id with the data folder's key. It exists only when the gateway is given that key file, which only the
// embedded host does; deployments use their identity provider's tokens.
//
// The token is what todo_kit.auth.issue_token makes: an HS256 JWT with sub, iss "todo-chatbot", aud "todo", iat and
// exp (12 hours later), signed with the key file's content without surrounding whitespace.
package devtoken

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strings"
	"time"

	"todo-chatbot/gateway/internal/httpedge"
)

const (
	// Issuer and Audience are todo_kit.auth's ISSUER and AUDIENCE.
	Issuer   = "todo-chatbot"
	Audience = "todo"
	// Lifetime is how long a dev token lives.
	Lifetime = 12 * time.Hour
	// minKeyLength is todo_kit.auth's floor for a signing key.
	minKeyLength = 32
	maxBodyBytes = 4096
)

// UserIDPattern is todo_kit.auth.USER_ID_PATTERN.
var UserIDPattern = regexp.MustCompile(`^[A-Za-z0-9._@:+-]{1,128}$`)

// Signer signs dev tokens with one key.
type Signer struct {
	key []byte
	now func() time.Time
}

// LoadKey reads the signing key file as todo_kit.auth reads it (content, surrounding whitespace removed).
func LoadKey(path string) (*Signer, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("TODO_GATEWAY_DEV_KEY_FILE cannot be read: %w", err)
	}
	key := strings.TrimSpace(string(raw))
	if len(key) < minKeyLength {
		return nil, errors.New("TODO_GATEWAY_DEV_KEY_FILE: the signing key must be at least 32 characters")
	}
	return &Signer{key: []byte(key), now: time.Now}, nil
}

// NewSigner signs with key at the times now returns (for tests).
func NewSigner(key string, now func() time.Time) *Signer {
	return &Signer{key: []byte(key), now: now}
}

// Token is the endpoint's answer.
type Token struct {
	Token     string `json:"token"`
	UserID    string `json:"user_id"`
	ExpiresAt string `json:"expires_at"`
}

// Sign makes a token for userID; it must match UserIDPattern.
func (s *Signer) Sign(userID string) (Token, error) {
	if !UserIDPattern.MatchString(userID) {
		return Token{}, errors.New("a user id is 1 to 128 letters, digits or . _ @ : + -")
	}
	issued := s.now().UTC().Truncate(time.Second)
	expires := issued.Add(Lifetime)
	header := map[string]string{"alg": "HS256", "typ": "JWT"}
	claims := map[string]any{"sub": userID, "iss": Issuer, "aud": Audience, "iat": issued.Unix(), "exp": expires.Unix()}
	encode := func(v any) string {
		b, _ := json.Marshal(v) // maps of strings and numbers always marshal
		return base64.RawURLEncoding.EncodeToString(b)
	}
	signingInput := encode(header) + "." + encode(claims)
	mac := hmac.New(sha256.New, s.key)
	mac.Write([]byte(signingInput))
	token := signingInput + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
	return Token{Token: token, UserID: userID, ExpiresAt: expires.Format(time.RFC3339)}, nil
}

// ServeHTTP answers POST {"user_id": "..."} with a Token; errors have the REST error shape.
func (s *Signer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		httpedge.WriteError(w, http.StatusMethodNotAllowed, 12, "use POST")
		return
	}
	var body struct {
		UserID string `json:"user_id"`
	}
	decoder := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	decoder.DisallowUnknownFields()
	if err := decoder.Decode(&body); err != nil {
		httpedge.WriteError(w, http.StatusBadRequest, 3, "the body must be {\"user_id\": \"<name>\"}")
		return
	}
	token, err := s.Sign(body.UserID)
	if err != nil {
		httpedge.WriteError(w, http.StatusBadRequest, 3, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(token)
}
