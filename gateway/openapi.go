// Package gateway is the REST/JSON and web face of the Todo Chatbot's gRPC services (see cmd/todo-gateway).
package gateway

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	// The messages the document describes, registered for the nullable marks below.
	_ "todo-chatbot/gateway/gen/go/todo/audit/v1"
	_ "todo-chatbot/gateway/gen/go/todo/chat/v1"
	_ "todo-chatbot/gateway/gen/go/todo/notify/v1"
	_ "todo-chatbot/gateway/gen/go/todo/recurrence/v1"
	_ "todo-chatbot/gateway/gen/go/todo/reminder/v1"
	_ "todo-chatbot/gateway/gen/go/todo/task/v1"
)

// generatedOpenAPI is the merged OpenAPI (v2) description of every service, as protoc-gen-openapiv2 wrote it into
// gen/ (definitions named by full proto names).
//
//go:embed gen/openapi/todo.swagger.json
var generatedOpenAPI []byte

// OpenAPI returns the document the gateway serves: the generated one, with every singular message field (Timestamp,
// Duration and the contract's own messages) marked x-nullable. The gateway writes every field, so an unset message
// field is JSON null, which the generated document does not allow for.
func OpenAPI() ([]byte, error) {
	var document map[string]any
	if err := json.Unmarshal(generatedOpenAPI, &document); err != nil {
		return nil, fmt.Errorf("the embedded OpenAPI document: %w", err)
	}
	definitions, _ := document["definitions"].(map[string]any)
	for name, definition := range definitions {
		message := messageOf(name)
		properties, _ := definition.(map[string]any)["properties"].(map[string]any)
		if message == nil || properties == nil {
			continue
		}
		for fieldName, property := range properties {
			field := message.Fields().ByName(protoreflect.Name(fieldName))
			if field != nil && field.Kind() == protoreflect.MessageKind && !field.IsList() && !field.IsMap() && field.ContainingOneof() == nil {
				property.(map[string]any)["x-nullable"] = true
			}
		}
	}
	return json.MarshalIndent(document, "", "  ")
}

// messageOf finds the message a definition describes: a message's full name, or "<service>.<Method>Body" for the
// part of a request that travels in the body.
func messageOf(definition string) protoreflect.MessageDescriptor {
	if found, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(definition)); err == nil {
		message, _ := found.(protoreflect.MessageDescriptor)
		return message
	}
	dot := strings.LastIndex(definition, ".")
	if dot < 0 || !strings.HasSuffix(definition, "Body") {
		return nil
	}
	found, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(definition[:dot]))
	if err != nil {
		return nil
	}
	service, ok := found.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil
	}
	method := service.Methods().ByName(protoreflect.Name(strings.TrimSuffix(definition[dot+1:], "Body")))
	if method == nil {
		return nil
	}
	return method.Input()
}
