package httpedge_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"todo-chatbot/gateway/internal/httpedge"
)

var echo = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write(body)
})

func TestAccessLogHasMethodPathStatusBytesButNoTokenQueryOrBody(t *testing.T) {
	var out bytes.Buffer
	handler := httpedge.AccessLog(slog.New(slog.NewJSONHandler(&out, nil)), echo)
	req := httptest.NewRequest(http.MethodPost, "/v1/tasks?secret_query=1", strings.NewReader("secret-body"))
	req.Header.Set("Authorization", "Bearer secret-token")
	handler.ServeHTTP(httptest.NewRecorder(), req)

	line := out.String()
	for _, secret := range []string{"secret-token", "secret_query", "secret-body", "Authorization"} {
		if strings.Contains(line, secret) {
			t.Fatalf("the access log holds %q: %s", secret, line)
		}
	}
	var entry map[string]any
	if err := json.Unmarshal([]byte(line), &entry); err != nil {
		t.Fatalf("not one JSON line: %s", line)
	}
	if entry["method"] != "POST" || entry["path"] != "/v1/tasks" || entry["status"] != float64(201) || entry["bytes"] != float64(11) {
		t.Fatalf("entry %v", entry)
	}
	if _, ok := entry["duration_ms"]; !ok {
		t.Fatalf("no duration: %v", entry)
	}
}

func TestCORSIsClosedWithoutConfiguredOrigins(t *testing.T) {
	handler := httpedge.CORS(nil, echo)
	req := httptest.NewRequest(http.MethodGet, "/v1/tasks", nil)
	req.Header.Set("Origin", "https://evil.test")
	reply := httptest.NewRecorder()
	handler.ServeHTTP(reply, req)
	if got := reply.Header().Get("Access-Control-Allow-Origin"); got != "" {
		t.Fatalf("CORS must be closed, got Allow-Origin %q", got)
	}
	preflight := httptest.NewRequest(http.MethodOptions, "/v1/tasks", nil)
	preflight.Header.Set("Origin", "https://evil.test")
	preflight.Header.Set("Access-Control-Request-Method", "POST")
	reply = httptest.NewRecorder()
	handler.ServeHTTP(reply, preflight)
	if reply.Code != http.StatusForbidden || reply.Header().Get("Access-Control-Allow-Methods") != "" {
		t.Fatalf("preflight: %d %v", reply.Code, reply.Header())
	}
}

func TestCORSAnswersOnlyConfiguredOrigins(t *testing.T) {
	handler := httpedge.CORS([]string{"https://app.test"}, echo)
	preflight := httptest.NewRequest(http.MethodOptions, "/v1/tasks", nil)
	preflight.Header.Set("Origin", "https://app.test")
	preflight.Header.Set("Access-Control-Request-Method", "POST")
	reply := httptest.NewRecorder()
	handler.ServeHTTP(reply, preflight)
	if reply.Code != http.StatusNoContent || reply.Header().Get("Access-Control-Allow-Origin") != "https://app.test" ||
		!strings.Contains(reply.Header().Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Fatalf("preflight: %d %v", reply.Code, reply.Header())
	}
	other := httptest.NewRequest(http.MethodGet, "/v1/tasks", nil)
	other.Header.Set("Origin", "https://app.test.evil.test")
	reply = httptest.NewRecorder()
	handler.ServeHTTP(reply, other)
	if reply.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Fatal("an origin that only starts like an allowed one must get no CORS header")
	}
}

func TestBodyLargerThanTheLimitIs413WithOrWithoutContentLength(t *testing.T) {
	handler := httpedge.LimitBody(1024, echo)
	for _, chunked := range []bool{false, true} {
		req := httptest.NewRequest(http.MethodPost, "/v1/tasks", bytes.NewReader(make([]byte, 1025)))
		if chunked {
			req.ContentLength = -1
		}
		reply := httptest.NewRecorder()
		handler.ServeHTTP(reply, req)
		var body struct {
			Code int `json:"code"`
		}
		if reply.Code != http.StatusRequestEntityTooLarge || json.Unmarshal(reply.Body.Bytes(), &body) != nil || body.Code != 8 {
			t.Fatalf("chunked=%v: %d %s", chunked, reply.Code, reply.Body)
		}
	}
	req := httptest.NewRequest(http.MethodPost, "/v1/tasks", bytes.NewReader(make([]byte, 1024)))
	req.ContentLength = -1
	reply := httptest.NewRecorder()
	handler.ServeHTTP(reply, req)
	if reply.Code != http.StatusCreated || reply.Body.Len() != 1024 {
		t.Fatalf("a body at the limit must pass whole: %d, %d bytes", reply.Code, reply.Body.Len())
	}
}

func TestStreamPathsMatchExactly(t *testing.T) {
	isStream := httpedge.StreamPathMatcher(map[string]bool{"/v1/tasks:stream": true})
	if !isStream("/v1/tasks:stream") || isStream("/v1/tasks") || isStream("/v1/tasks:streamx") {
		t.Fatal("stream path matching is wrong")
	}
}
