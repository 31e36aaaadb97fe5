package sse_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	notifyv1 "todo-chatbot/gateway/gen/go/todo/notify/v1"
	taskv1 "todo-chatbot/gateway/gen/go/todo/task/v1"
	"todo-chatbot/gateway/internal/sse"
)

var marshaler = &sse.Marshaler{JSON: protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}}

func chunk(m proto.Message) map[string]any { return map[string]any{"result": m} }

func TestNotificationIsAnEventWithItsIDAndOneDataLine(t *testing.T) {
	msg := &notifyv1.StreamNotificationsResponse{Notification: &notifyv1.Notification{
		NotificationId: "n-1", Title: "Call mom", Body: "line one\nline two",
	}}
	out, err := marshaler.Marshal(chunk(msg))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != 3 || lines[0] != "id: n-1" || lines[1] != "event: notification" || !strings.HasPrefix(lines[2], "data: {") {
		t.Fatalf("unexpected event:\n%s", out)
	}
	if !strings.Contains(lines[2], `"notification_id":`) || !strings.Contains(lines[2], `line one\nline two`) {
		t.Fatalf("data is not the notification's JSON with proto names: %s", lines[2])
	}
}

func TestHeartbeatCarriesTheLastIDToResumeAfter(t *testing.T) {
	out, err := marshaler.Marshal(chunk(&taskv1.StreamTaskChangesResponse{Heartbeat: &taskv1.TaskFeedHeartbeat{LastChangeId: "c-9"}}))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(out), "id: c-9\nevent: heartbeat\ndata: {") {
		t.Fatalf("unexpected heartbeat:\n%s", out)
	}
}

func TestHeartbeatWithoutALastIDHasNoIDLine(t *testing.T) {
	out, err := marshaler.Marshal(chunk(&notifyv1.StreamNotificationsResponse{Heartbeat: &notifyv1.Heartbeat{}}))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "id:") {
		t.Fatalf("an empty id would reset the client's last id:\n%s", out)
	}
}

func TestTaskChangeIsAChangeEventWithKindAsName(t *testing.T) {
	msg := &taskv1.StreamTaskChangesResponse{Change: &taskv1.TaskChange{ChangeId: "c-1", Kind: taskv1.TaskChangeKind_TASK_CHANGE_KIND_CREATED}}
	out, err := marshaler.Marshal(chunk(msg))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(out), "id: c-1\nevent: change\n") || !strings.Contains(string(out), `"TASK_CHANGE_KIND_CREATED"`) {
		t.Fatalf("unexpected change event:\n%s", out)
	}
}

func TestMessageWithNothingSetIsRefused(t *testing.T) {
	if _, err := marshaler.Marshal(chunk(&notifyv1.StreamNotificationsResponse{})); err == nil {
		t.Fatal("an empty message must not become an event")
	}
}

// A whole stream through grpc-gateway's own forwarding: events separated by blank lines, a flush after each, and a
// backend error as a final error event.
func TestForwardedStreamIsFlushedPerEventAndEndsWithAnErrorEvent(t *testing.T) {
	mux := runtime.NewServeMux(runtime.WithMarshalerOption(sse.ContentType, marshaler))
	messages := []proto.Message{
		&notifyv1.StreamNotificationsResponse{Heartbeat: &notifyv1.Heartbeat{}},
		&notifyv1.StreamNotificationsResponse{Notification: &notifyv1.Notification{NotificationId: "n-1"}},
	}
	recv := func() (proto.Message, error) {
		if len(messages) == 0 {
			return nil, status.Error(codes.Unavailable, "backend gone")
		}
		m := messages[0]
		messages = messages[1:]
		return m, nil
	}
	req := httptest.NewRequest(http.MethodGet, "/v1/notifications:stream", nil)
	req.Header.Set("Accept", sse.ContentType)
	recorder := &flushCounter{ResponseRecorder: httptest.NewRecorder()}
	ctx := runtime.NewServerMetadataContext(context.Background(), runtime.ServerMetadata{})
	_, outbound := runtime.MarshalerForRequest(mux, req)
	runtime.ForwardResponseStream(ctx, mux, outbound, recorder, req, recv)

	body := recorder.Body.String()
	events := strings.Split(strings.TrimSuffix(body, "\n\n"), "\n\n")
	if len(events) != 3 {
		t.Fatalf("want 3 events, got %d:\n%s", len(events), body)
	}
	if !strings.HasPrefix(events[0], "event: heartbeat") || !strings.HasPrefix(events[1], "id: n-1\nevent: notification") {
		t.Fatalf("unexpected events:\n%s", body)
	}
	if events[2] != `event: error`+"\n"+`data: {"code":14,"message":"backend gone"}` {
		t.Fatalf("unexpected error event: %q", events[2])
	}
	if recorder.flushes < 2 {
		t.Fatalf("want a flush per event, got %d", recorder.flushes)
	}
	if got := recorder.Header().Get("Content-Type"); !strings.HasPrefix(got, sse.ContentType) {
		t.Fatalf("content type %q", got)
	}
}

type flushCounter struct {
	*httptest.ResponseRecorder
	flushes int
}

func (f *flushCounter) Flush() { f.flushes++; f.ResponseRecorder.Flush() }

func TestRequestsAreNotDecodedAsEvents(t *testing.T) {
	var target notifyv1.StreamNotificationsRequest
	if err := marshaler.NewDecoder(strings.NewReader("{}")).Decode(&target); err == nil {
		t.Fatal("decoding must fail")
	}
	if err := marshaler.NewEncoder(io.Discard).Encode(chunk(&notifyv1.StreamNotificationsResponse{})); err == nil {
		t.Fatal("encoding an empty message must fail")
	}
}
