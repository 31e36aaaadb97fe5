// Package rest is the REST/JSON face of the services: grpc-gateway's generated handlers on one mux, with the JSON
// conventions of the contract (proto field names, every field present, enums as names), only the bearer token
// forwarded as metadata, and server-sent events for the live streams.
package rest

import (
	"context"
	"errors"
	"mime"
	"net/http"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/api/annotations"
	// The services put google.rpc details (BadRequest, ...) in their errors; linking them lets the error body
	// show them as JSON instead of failing to marshal an unknown Any.
	_ "google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	auditv1 "todo-chatbot/gateway/gen/go/todo/audit/v1"
	chatv1 "todo-chatbot/gateway/gen/go/todo/chat/v1"
	notifyv1 "todo-chatbot/gateway/gen/go/todo/notify/v1"
	recurrencev1 "todo-chatbot/gateway/gen/go/todo/recurrence/v1"
	reminderv1 "todo-chatbot/gateway/gen/go/todo/reminder/v1"
	taskv1 "todo-chatbot/gateway/gen/go/todo/task/v1"
	"todo-chatbot/gateway/internal/sse"
)

// JSON is how messages are written: proto field names (as grpcurl prints them), unset fields included.
var JSON = protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}

// Backends gives the connection of each gRPC service (full name).
type Backends interface {
	For(service string) grpc.ClientConnInterface
}

// NewMux registers every service's REST routes, calling the backends.
func NewMux(ctx context.Context, backends Backends, shuttingDown func() bool) (*runtime.ServeMux, error) {
	jsonMarshaler := &runtime.HTTPBodyMarshaler{Marshaler: &runtime.JSONPb{
		MarshalOptions: JSON,
		// Both the proto and the JSON names are accepted; an unknown field is a client's mistake (400).
		UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
	}}
	mux := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, jsonMarshaler),
		// Ids may hold "/" (a reminder id is "<task id>/<rule id>/<n>"): a client sends it percent-encoded as %2F
		// in one path segment. This mode decodes a one-segment variable whole; the default (legacy) mode finds no
		// route for it, and the all-characters mode splits the path at %2F.
		runtime.WithUnescapingMode(runtime.UnescapingModeAllExceptReserved),
		runtime.WithMarshalerOption(sse.ContentType, &sse.Marshaler{JSON: JSON}),
		// Only Authorization reaches the services (grpc-gateway always forwards it as `authorization`); cookies
		// and other headers stay at the edge.
		runtime.WithIncomingHeaderMatcher(func(string) (string, bool) { return "", false }),
		runtime.WithStreamErrorHandler(func(ctx context.Context, err error) *status.Status {
			if shuttingDown() && (errors.Is(err, context.Canceled) || status.Code(err) == codes.Canceled) {
				return status.New(codes.Unavailable, "the gateway is shutting down; reconnect with resume_after")
			}
			return status.Convert(err)
		}),
	)
	registrations := []func(context.Context, *runtime.ServeMux) error{
		func(ctx context.Context, m *runtime.ServeMux) error {
			return taskv1.RegisterTaskServiceHandlerClient(ctx, m, taskv1.NewTaskServiceClient(backends.For(taskv1.TaskService_ServiceDesc.ServiceName)))
		},
		func(ctx context.Context, m *runtime.ServeMux) error {
			return reminderv1.RegisterReminderServiceHandlerClient(ctx, m, reminderv1.NewReminderServiceClient(backends.For(reminderv1.ReminderService_ServiceDesc.ServiceName)))
		},
		func(ctx context.Context, m *runtime.ServeMux) error {
			return recurrencev1.RegisterRecurrenceServiceHandlerClient(ctx, m, recurrencev1.NewRecurrenceServiceClient(backends.For(recurrencev1.RecurrenceService_ServiceDesc.ServiceName)))
		},
		func(ctx context.Context, m *runtime.ServeMux) error {
			return notifyv1.RegisterNotificationServiceHandlerClient(ctx, m, notifyv1.NewNotificationServiceClient(backends.For(notifyv1.NotificationService_ServiceDesc.ServiceName)))
		},
		func(ctx context.Context, m *runtime.ServeMux) error {
			return auditv1.RegisterAuditServiceHandlerClient(ctx, m, auditv1.NewAuditServiceClient(backends.For(auditv1.AuditService_ServiceDesc.ServiceName)))
		},
		func(ctx context.Context, m *runtime.ServeMux) error {
			return chatv1.RegisterChatServiceHandlerClient(ctx, m, chatv1.NewChatServiceClient(backends.For(chatv1.ChatService_ServiceDesc.ServiceName)))
		},
	}
	for _, register := range registrations {
		if err := register(ctx, mux); err != nil {
			return nil, err
		}
	}
	return mux, nil
}

// Services are the full names of the gRPC services the REST routes call.
func Services() []string {
	return []string{
		taskv1.TaskService_ServiceDesc.ServiceName,
		reminderv1.ReminderService_ServiceDesc.ServiceName,
		recurrencev1.RecurrenceService_ServiceDesc.ServiceName,
		notifyv1.NotificationService_ServiceDesc.ServiceName,
		auditv1.AuditService_ServiceDesc.ServiceName,
		chatv1.ChatService_ServiceDesc.ServiceName,
	}
}

// StreamPaths are the GET paths of the server-streaming RPCs, read from their google.api.http rules, so a new
// stream in the contract is treated as one without a change here.
func StreamPaths() map[string]bool {
	paths := map[string]bool{}
	for _, service := range Services() {
		desc, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(service))
		if err != nil {
			continue
		}
		methods := desc.(protoreflect.ServiceDescriptor).Methods()
		for i := range methods.Len() {
			method := methods.Get(i)
			if !method.IsStreamingServer() {
				continue
			}
			rule, ok := proto.GetExtension(method.Options(), annotations.E_Http).(*annotations.HttpRule)
			if ok && rule.GetGet() != "" {
				paths[rule.GetGet()] = true
			}
		}
	}
	return paths
}

// WantsEvents tells whether the request asks for server-sent events.
func WantsEvents(r *http.Request) bool {
	for _, value := range r.Header.Values("Accept") {
		for part := range strings.SplitSeq(value, ",") {
			if media, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil && media == sse.ContentType {
				return true
			}
		}
	}
	return false
}

// PrepareEventStream adapts a stream request that asks for events: the Accept header exactly as the mux selects
// marshalers by it, Last-Event-ID as resume_after when the query has none, and headers that keep proxies from
// buffering or caching the stream.
func PrepareEventStream(w http.ResponseWriter, r *http.Request) *http.Request {
	r = r.Clone(r.Context())
	r.Header.Set("Accept", sse.ContentType)
	query := r.URL.Query()
	if lastID := strings.TrimSpace(r.Header.Get("Last-Event-ID")); lastID != "" && query.Get("resume_after") == "" {
		query.Set("resume_after", lastID)
		u := *r.URL
		u.RawQuery = query.Encode()
		r.URL = &u
	}
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	return r
}
