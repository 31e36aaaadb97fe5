// Package httpedge is what every HTTP request passes through before it reaches a route: the JSON access log, CORS
// (closed unless origins are configured), the request body limit and the unary call timeout.
package httpedge

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"
)

// AccessLog writes one JSON line per request: method, path (without the query, which may carry ids), status,
// duration and bytes written. Never headers (Authorization) or bodies.
func AccessLog(logger *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started := time.Now()
		recorder := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(recorder, r)
		logger.LogAttrs(r.Context(), slog.LevelInfo, "request",
			slog.String("method", r.Method),
			slog.String("path", r.URL.Path),
			slog.Int("status", recorder.status),
			slog.Float64("duration_ms", float64(time.Since(started).Microseconds())/1000),
			slog.Int64("bytes", recorder.bytes),
		)
	})
}

// statusRecorder remembers the status and counts the bytes; Unwrap keeps Flush reachable for streams.
type statusRecorder struct {
	http.ResponseWriter
	status      int
	bytes       int64
	wroteHeader bool
}

func (s *statusRecorder) WriteHeader(status int) {
	if !s.wroteHeader {
		s.status, s.wroteHeader = status, true
	}
	s.ResponseWriter.WriteHeader(status)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	s.wroteHeader = true
	n, err := s.ResponseWriter.Write(b)
	s.bytes += int64(n)
	return n, err
}

// Flush passes a flush on (grpc-gateway flushes each stream message).
func (s *statusRecorder) Flush() {
	if flusher, ok := s.ResponseWriter.(http.Flusher); ok {
		flusher.Flush()
	}
}

// Unwrap gives http.ResponseController the writer underneath.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// CORS answers cross-origin requests only from allowed origins ("*" allows any). With none allowed no CORS header is
// ever sent, so browsers keep other sites' pages from reading any answer, and preflights are refused.
func CORS(allowed []string, next http.Handler) http.Handler {
	anyOrigin := slices.Contains(allowed, "*")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Add("Vary", "Origin")
		preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
		if !anyOrigin && !slices.Contains(allowed, origin) {
			if preflight {
				WriteError(w, http.StatusForbidden, 7, "cross-origin requests from this origin are not allowed")
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Access-Control-Allow-Origin", origin)
		w.Header().Set("Access-Control-Expose-Headers", "Content-Type")
		if preflight {
			w.Header().Set("Access-Control-Allow-Methods", "GET, POST, PATCH, PUT, DELETE")
			w.Header().Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Accept, Last-Event-ID")
			w.Header().Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// LimitBody refuses a body larger than maxBytes with 413, before any handler reads it: grpc-gateway would report a
// cut-off body as a malformed one (400). Bodies are small (1 MiB by default), so they are read here whole.
func LimitBody(maxBytes int64, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		if r.ContentLength > maxBytes {
			tooLarge(w, maxBytes)
			return
		}
		control := http.NewResponseController(w)
		_ = control.SetReadDeadline(time.Now().Add(bodyReadTimeout))
		body, err := io.ReadAll(io.LimitReader(r.Body, maxBytes+1))
		_ = r.Body.Close()
		_ = control.SetReadDeadline(time.Time{})
		if err != nil {
			WriteError(w, http.StatusBadRequest, 3, "the request body could not be read")
			return
		}
		if int64(len(body)) > maxBytes {
			tooLarge(w, maxBytes)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		next.ServeHTTP(w, r)
	})
}

// bodyReadTimeout bounds how long a client may take to send its body.
const bodyReadTimeout = 30 * time.Second

func tooLarge(w http.ResponseWriter, maxBytes int64) {
	w.Header().Set("Connection", "close") // the rest of the body is not read
	WriteError(w, http.StatusRequestEntityTooLarge, 8, fmt.Sprintf("the request body is larger than %d bytes", maxBytes))
}

// WriteError writes grpc-gateway's error body ({"code": <gRPC code>, "message", "details"}) with an HTTP status.
func WriteError(w http.ResponseWriter, httpStatus int, grpcCode int, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(httpStatus)
	_ = json.NewEncoder(w).Encode(map[string]any{"code": grpcCode, "message": message, "details": []any{}})
}

// IsStream tells whether path is one of the live streams, which get no timeout.
type IsStream func(path string) bool

// StreamPathMatcher matches the stream paths exactly.
func StreamPathMatcher(paths map[string]bool) IsStream {
	return func(path string) bool { return paths[strings.TrimSuffix(path, "/")] }
}
