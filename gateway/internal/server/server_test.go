package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	taskv1 "todo-chatbot/gateway/gen/go/todo/task/v1"
	"todo-chatbot/gateway/internal/config"
	"todo-chatbot/gateway/internal/server"
	"todo-chatbot/gateway/internal/site"
)

// taskBackend is a TaskService that records the metadata of each call.
type taskBackend struct {
	taskv1.UnimplementedTaskServiceServer
	mu       sync.Mutex
	metadata []metadata.MD
	resumes  []string
}

func (b *taskBackend) record(ctx context.Context) {
	md, _ := metadata.FromIncomingContext(ctx)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.metadata = append(b.metadata, md)
}

func (b *taskBackend) last() metadata.MD {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.metadata[len(b.metadata)-1]
}

func (b *taskBackend) GetTask(ctx context.Context, req *taskv1.GetTaskRequest) (*taskv1.GetTaskResponse, error) {
	b.record(ctx)
	if req.GetTaskId() == "other-users" {
		return nil, status.Error(codes.NotFound, "no such task")
	}
	return &taskv1.GetTaskResponse{Task: &taskv1.Task{TaskId: req.GetTaskId(), Title: "Pay rent"}}, nil
}

func (b *taskBackend) ListTasks(ctx context.Context, _ *taskv1.ListTasksRequest) (*taskv1.ListTasksResponse, error) {
	b.record(ctx)
	<-ctx.Done() // a call that never finishes on its own
	return nil, status.FromContextError(ctx.Err()).Err()
}

func (b *taskBackend) StreamTaskChanges(req *taskv1.StreamTaskChangesRequest, stream grpc.ServerStreamingServer[taskv1.StreamTaskChangesResponse]) error {
	b.record(stream.Context())
	b.mu.Lock()
	b.resumes = append(b.resumes, req.GetResumeAfter())
	b.mu.Unlock()
	for {
		heartbeat := &taskv1.StreamTaskChangesResponse{Heartbeat: &taskv1.TaskFeedHeartbeat{LastChangeId: req.GetResumeAfter()}}
		if err := stream.Send(heartbeat); err != nil {
			return err
		}
		select {
		case <-stream.Context().Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
}

type fixture struct {
	backend *taskBackend
	health  *health.Server
	gateway *server.Server
	http    *httptest.Server
}

func start(t *testing.T, edit func(*config.Config)) *fixture {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	grpcServer := grpc.NewServer()
	backend := &taskBackend{}
	taskv1.RegisterTaskServiceServer(grpcServer, backend)
	healthServer := health.NewServer()
	for service := range config.AppIDs {
		healthServer.SetServingStatus(service, healthpb.HealthCheckResponse_SERVING)
	}
	healthpb.RegisterHealthServer(grpcServer, healthServer)
	go func() { _ = grpcServer.Serve(listener) }()
	t.Cleanup(grpcServer.Stop)

	cfg := config.Config{Listen: "127.0.0.1:0", Backend: listener.Addr().String(), MaxBodyBytes: 1 << 20,
		Timeout: 300 * time.Millisecond, BackendConnections: 2}
	if edit != nil {
		edit(&cfg)
	}
	gateway, err := server.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gateway.Close)
	httpServer := httptest.NewServer(gateway.Handler)
	t.Cleanup(httpServer.Close)
	return &fixture{backend: backend, health: healthServer, gateway: gateway, http: httpServer}
}

func (f *fixture) do(t *testing.T, method, path string, headers map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, f.http.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func TestOnlyTheBearerTokenReachesTheBackend(t *testing.T) {
	f := start(t, nil)
	resp, body := f.do(t, http.MethodGet, "/v1/tasks/t-1", map[string]string{
		"Authorization": "Bearer abc", "Cookie": "session=secret", "X-Custom": "x", "Grpc-Metadata-Authorization": "Bearer forged",
	})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	md := f.backend.last()
	if got := md.Get("authorization"); len(got) != 1 || got[0] != "Bearer abc" {
		t.Fatalf("authorization metadata %v", got)
	}
	for key := range md {
		if strings.Contains(key, "cookie") || strings.Contains(key, "custom") || strings.HasPrefix(key, "grpcgateway-") {
			t.Fatalf("header %s must not reach the backend: %v", key, md)
		}
	}
	if len(md.Get("dapr-app-id")) != 0 {
		t.Fatal("no dapr-app-id without a sidecar")
	}
}

func TestResponsesUseProtoNamesAndEveryField(t *testing.T) {
	f := start(t, nil)
	_, body := f.do(t, http.MethodGet, "/v1/tasks/t-1", nil)
	var reply map[string]map[string]any
	if err := json.Unmarshal([]byte(body), &reply); err != nil {
		t.Fatal(err)
	}
	task := reply["task"]
	for _, field := range []string{"task_id", "create_time", "complete_time", "tags"} {
		if _, ok := task[field]; !ok {
			t.Fatalf("field %s missing: %s", field, body)
		}
	}
	if task["status"] != "TASK_STATUS_UNSPECIFIED" || task["version"] != "0" {
		t.Fatalf("enums as names and int64 as strings: %s", body)
	}
}

func TestAnIDWithAnEncodedSlashReachesTheBackendWhole(t *testing.T) {
	f := start(t, nil)
	resp, body := f.do(t, http.MethodGet, "/v1/tasks/task-1%2Frule%2F2", nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"task_id":"task-1/rule/2"`) {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
}

func TestGRPCStatusBecomesHTTPStatusAndErrorBody(t *testing.T) {
	f := start(t, nil)
	resp, body := f.do(t, http.MethodGet, "/v1/tasks/other-users", nil)
	var errBody struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if resp.StatusCode != http.StatusNotFound || json.Unmarshal([]byte(body), &errBody) != nil || errBody.Code != 5 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
}

func TestUnaryCallsTimeOutButStreamsDoNot(t *testing.T) {
	f := start(t, nil)
	resp, body := f.do(t, http.MethodGet, "/v1/tasks", nil)
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("a call past the timeout: %d %s", resp.StatusCode, body)
	}
	events := openEvents(t, f, "", nil)
	deadline := time.Now().Add(time.Second) // three times the unary timeout
	count := 0
	for time.Now().Before(deadline) {
		if _, err := events.next(); err != nil {
			t.Fatalf("the stream ended after %d events: %v", count, err)
		}
		count++
	}
}

type eventReader struct {
	scanner *bufio.Scanner
	resp    *http.Response
}

func openEvents(t *testing.T, f *fixture, query string, headers map[string]string) *eventReader {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, f.http.URL+"/v1/tasks:stream"+query, nil)
	req.Header.Set("Accept", "text/event-stream, */*")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("content type %q", resp.Header.Get("Content-Type"))
	}
	return &eventReader{scanner: bufio.NewScanner(resp.Body), resp: resp}
}

// next returns one event's lines.
func (e *eventReader) next() ([]string, error) {
	var lines []string
	for e.scanner.Scan() {
		line := e.scanner.Text()
		if line == "" {
			return lines, nil
		}
		lines = append(lines, line)
	}
	if err := e.scanner.Err(); err != nil {
		return nil, err
	}
	return nil, io.EOF
}

func TestLastEventIDIsTheResumePointUnlessTheQueryNamesOne(t *testing.T) {
	f := start(t, nil)
	events := openEvents(t, f, "", map[string]string{"Last-Event-ID": "c-7"})
	first, err := events.next()
	if err != nil || first[0] != "id: c-7" {
		t.Fatalf("first event %v, %v", first, err)
	}
	events = openEvents(t, f, "?resume_after=c-9", map[string]string{"Last-Event-ID": "c-7"})
	if first, err = events.next(); err != nil || first[0] != "id: c-9" {
		t.Fatalf("first event %v, %v", first, err)
	}
}

func TestShutdownEndsOpenStreamsWithAnUnavailableErrorEvent(t *testing.T) {
	f := start(t, nil)
	events := openEvents(t, f, "", nil)
	if _, err := events.next(); err != nil {
		t.Fatal(err)
	}
	f.gateway.EndStreams()
	for {
		lines, err := events.next()
		if err != nil {
			t.Fatalf("the stream ended without an error event: %v", err)
		}
		if lines[0] == "event: error" {
			if !strings.Contains(lines[1], `"code":14`) {
				t.Fatalf("error event %v", lines)
			}
			return
		}
	}
}

func TestDaprSidecarCallsNameTheAppAndStreams(t *testing.T) {
	// The fake backend stands in for the sidecar: it sees the metadata Dapr would route by.
	f := start(t, func(cfg *config.Config) { cfg.DaprAddress, cfg.Backend = cfg.Backend, "" })
	f.do(t, http.MethodGet, "/v1/tasks/t-1", nil)
	if md := f.backend.last(); len(md.Get("dapr-app-id")) != 1 || md.Get("dapr-app-id")[0] != "task-svc" || len(md.Get("dapr-stream")) != 0 {
		t.Fatalf("unary metadata %v", md)
	}
	events := openEvents(t, f, "", nil)
	if _, err := events.next(); err != nil {
		t.Fatal(err)
	}
	if md := f.backend.last(); md.Get("dapr-app-id")[0] != "task-svc" || len(md.Get("dapr-stream")) != 1 || md.Get("dapr-stream")[0] != "true" {
		t.Fatalf("stream metadata %v", md)
	}
}

func TestDaprSidecarCallsCarryTheSidecarsAPIToken(t *testing.T) {
	f := start(t, func(cfg *config.Config) {
		cfg.DaprAddress, cfg.Backend = cfg.Backend, ""
		cfg.DaprAPIToken = "sidecar-token"
	})
	f.do(t, http.MethodGet, "/v1/tasks/t-1", map[string]string{"Authorization": "Bearer abc"})
	md := f.backend.last()
	if got := md.Get("dapr-api-token"); len(got) != 1 || got[0] != "sidecar-token" {
		t.Fatalf("unary call: dapr-api-token %v", got)
	}
	if got := md.Get("authorization"); len(got) != 1 || got[0] != "Bearer abc" {
		t.Fatalf("the user's token must still travel beside the sidecar's: %v", got)
	}
	events := openEvents(t, f, "", nil)
	if _, err := events.next(); err != nil {
		t.Fatal(err)
	}
	if got := f.backend.last().Get("dapr-api-token"); len(got) != 1 || got[0] != "sidecar-token" {
		t.Fatalf("stream: dapr-api-token %v", got)
	}
	if resp, body := f.do(t, http.MethodGet, "/readyz", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("readiness through a sidecar that got its token: %d %s", resp.StatusCode, body)
	}
}

func TestTheSidecarsAPITokenNeverGoesToADirectBackend(t *testing.T) {
	// DAPR_API_TOKEN may be in the environment of a gateway that calls the services directly: it must stay there.
	f := start(t, func(cfg *config.Config) { cfg.DaprAPIToken = "sidecar-token" })
	f.do(t, http.MethodGet, "/v1/tasks/t-1", nil)
	events := openEvents(t, f, "", nil)
	if _, err := events.next(); err != nil {
		t.Fatal(err)
	}
	f.backend.mu.Lock()
	defer f.backend.mu.Unlock()
	if len(f.backend.metadata) < 2 {
		t.Fatalf("expected a unary call and a stream, saw %d calls", len(f.backend.metadata))
	}
	for _, md := range f.backend.metadata {
		if got := md.Get("dapr-api-token"); len(got) != 0 {
			t.Fatalf("a direct backend got dapr-api-token %v", got)
		}
	}
}

func TestReadinessFollowsTheBackendsHealth(t *testing.T) {
	f := start(t, nil)
	if resp, body := f.do(t, http.MethodGet, "/readyz", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	f.health.SetServingStatus("todo.chat.v1.ChatService", healthpb.HealthCheckResponse_NOT_SERVING)
	resp, body := f.do(t, http.MethodGet, "/readyz", nil)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, `"todo.chat.v1.ChatService","status":"NOT_SERVING"`) {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if resp, _ := f.do(t, http.MethodGet, "/healthz", nil); resp.StatusCode != http.StatusOK {
		t.Fatal("the process is alive whatever the backends say")
	}
}

func TestWithoutKeyFileThereIsNoDevTokenEndpoint(t *testing.T) {
	f := start(t, nil)
	req, _ := http.NewRequest(http.MethodPost, f.http.URL+"/v1/dev/token", strings.NewReader(`{"user_id":"alice"}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("got %d", resp.StatusCode)
	}
	if _, body := f.do(t, http.MethodGet, "/ui-config.json", nil); strings.TrimSpace(body) != `{"dev_sign_in":false}` {
		t.Fatalf("ui-config %s", body)
	}
}

func TestStaticFilesCarryTheSecurityHeadersAndFoldersAreNotListed(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "index.html"), []byte("<p>page</p>"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "assets"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "assets", "app.js"), []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := start(t, func(cfg *config.Config) { cfg.StaticDir = dir })
	resp, body := f.do(t, http.MethodGet, "/", nil)
	if resp.StatusCode != http.StatusOK || body != "<p>page</p>" {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if resp.Header.Get("Content-Security-Policy") != site.ContentSecurityPolicy || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("headers %v", resp.Header)
	}
	if resp, _ := f.do(t, http.MethodGet, "/assets/", nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("a folder without index.html must not be listed: %d", resp.StatusCode)
	}
	if resp, _ := f.do(t, http.MethodGet, "/assets/app.js", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("asset: %d", resp.StatusCode)
	}
}

func TestOpenAPIDocumentDescribesEveryService(t *testing.T) {
	f := start(t, nil)
	_, body := f.do(t, http.MethodGet, "/openapi.json", nil)
	var document struct {
		Swagger string                    `json:"swagger"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal([]byte(body), &document); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/v1/tasks", "/v1/reminders", "/v1/recurrence:preview", "/v1/notifications:stream", "/v1/activity", "/v1/chat:send"} {
		if _, ok := document.Paths[path]; !ok {
			t.Errorf("%s missing from /openapi.json", path)
		}
	}
}
