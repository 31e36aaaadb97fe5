package gateway_test

import (
	"encoding/json"
	"testing"

	"todo-chatbot/gateway"
)

func TestUnsetMessageFieldsAreNullableInTheServedDocument(t *testing.T) {
	raw, err := gateway.OpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	var document struct {
		Definitions map[string]struct {
			Properties map[string]map[string]any `json:"properties"`
		} `json:"definitions"`
	}
	if err := json.Unmarshal(raw, &document); err != nil {
		t.Fatal(err)
	}
	nullable := func(definition, property string) bool {
		props, ok := document.Definitions[definition]
		if !ok {
			t.Fatalf("no definition %s", definition)
		}
		schema, ok := props.Properties[property]
		if !ok {
			t.Fatalf("no property %s.%s", definition, property)
		}
		return schema["x-nullable"] == true
	}
	for _, field := range [][2]string{
		{"todo.reminder.v1.Reminder", "fired_time"}, // Timestamp
		{"todo.reminder.v1.Reminder", "lateness"},   // Duration
		{"todo.task.v1.Task", "due"},                // a message of the contract
	} {
		if !nullable(field[0], field[1]) {
			t.Errorf("%s.%s must be x-nullable", field[0], field[1])
		}
	}
	for _, field := range [][2]string{
		{"todo.task.v1.Task", "title"},                                        // a string is "" when unset
		{"todo.task.v1.Task", "tags"},                                         // a list is [] when unset
		{"todo.reminder.v1.ReminderService.SnoozeReminderBody", "snooze_for"}, // oneof members are left out when unset
	} {
		if nullable(field[0], field[1]) {
			t.Errorf("%s.%s must not be x-nullable", field[0], field[1])
		}
	}
}
