// Package sse turns the gateway's server streams into server-sent events.
//
// It is a grpc-gateway Marshaler registered for Accept: text/event-stream, so the generated stream handlers do the
// forwarding (one write and one flush per message) and this package only decides each message's bytes:
//
//	id: <notification_id | change_id | the heartbeat's last id>
//	event: notification | change | heartbeat
//	data: <the set field's JSON on one line>
//
// followed by a blank line (the delimiter). A backend error becomes a final "event: error" with data
// {"code": <gRPC code>, "message": "..."}.
package sse

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// ContentType is the media type of server-sent events.
const ContentType = "text/event-stream"

// idFields names, per event, the field of the event's message that is its id. A heartbeat's id is its last_*_id
// field (the id to resume after).
var idFields = map[string]string{
	"notification": "notification_id",
	"change":       "change_id",
}

// Marshaler writes stream messages as events; JSON is the JSON of every other message.
type Marshaler struct {
	JSON protojson.MarshalOptions
}

var _ runtime.Marshaler = (*Marshaler)(nil)
var _ runtime.Delimited = (*Marshaler)(nil)

// ContentType is text/event-stream for everything, including an error before the first event.
func (m *Marshaler) ContentType(any) string { return ContentType + "; charset=utf-8" }

// Delimiter ends an event with the blank line.
func (m *Marshaler) Delimiter() []byte { return []byte("\n") }

// Marshal renders one stream chunk ({"result": message} or {"error": status}) or an error status as an event.
func (m *Marshaler) Marshal(v any) ([]byte, error) {
	switch chunk := v.(type) {
	case map[string]any:
		if message, ok := chunk["result"].(proto.Message); ok {
			return m.event(message)
		}
	case map[string]proto.Message:
		if st, ok := chunk["error"].(*statuspb.Status); ok {
			return errorEvent(st)
		}
	case *statuspb.Status:
		return errorEvent(chunk)
	}
	return nil, fmt.Errorf("sse: cannot render %T as an event", v)
}

// Event renders one stream message: the first populated message field names the event and holds its data.
func (m *Marshaler) event(message proto.Message) ([]byte, error) {
	var name string
	var value protoreflect.Message
	message.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() == protoreflect.MessageKind && !fd.IsList() && !fd.IsMap() {
			name, value = string(fd.Name()), v.Message()
			return false
		}
		return true
	})
	if value == nil {
		return nil, fmt.Errorf("sse: %s has no event field set", message.ProtoReflect().Descriptor().FullName())
	}
	data, err := m.JSON.Marshal(value.Interface())
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if id := eventID(name, value); id != "" {
		out.WriteString("id: " + id + "\n")
	}
	out.WriteString("event: " + name + "\n")
	writeData(&out, data)
	return out.Bytes(), nil
}

func eventID(event string, value protoreflect.Message) string {
	fields := value.Descriptor().Fields()
	if name, ok := idFields[event]; ok {
		if fd := fields.ByName(protoreflect.Name(name)); fd != nil && fd.Kind() == protoreflect.StringKind {
			return singleLine(value.Get(fd).String())
		}
		return ""
	}
	for i := range fields.Len() {
		fd := fields.Get(i)
		name := string(fd.Name())
		if fd.Kind() == protoreflect.StringKind && strings.HasPrefix(name, "last_") && strings.HasSuffix(name, "_id") {
			return singleLine(value.Get(fd).String())
		}
	}
	return ""
}

func errorEvent(st *statuspb.Status) ([]byte, error) {
	data, err := json.Marshal(map[string]any{"code": st.GetCode(), "message": st.GetMessage()})
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	out.WriteString("event: error\n")
	writeData(&out, data)
	return out.Bytes(), nil
}

// writeData writes data lines; protojson and encoding/json never put a newline in compact output, but an event
// must not be split or forged by one, so every line gets its own "data:" prefix as the format requires.
func writeData(out *bytes.Buffer, data []byte) {
	for line := range strings.SplitSeq(strings.ReplaceAll(string(data), "\r", ""), "\n") {
		out.WriteString("data: " + line + "\n")
	}
}

// singleLine keeps an id from ending the id field early (ids are server-made; this is belt and braces).
func singleLine(s string) string {
	return strings.NewReplacer("\n", "", "\r", "").Replace(s)
}

// Unmarshal is not used: stream requests are GETs without a body.
func (m *Marshaler) Unmarshal([]byte, any) error {
	return fmt.Errorf("sse: requests are not read as events")
}

// NewDecoder refuses bodies: only GET streams are served as events.
func (m *Marshaler) NewDecoder(io.Reader) runtime.Decoder {
	return runtime.DecoderFunc(func(any) error { return fmt.Errorf("sse: requests are not read as events") })
}

// NewEncoder writes events.
func (m *Marshaler) NewEncoder(w io.Writer) runtime.Encoder {
	return runtime.EncoderFunc(func(v any) error {
		b, err := m.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	})
}
