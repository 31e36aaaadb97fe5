module todo-chatbot/probe

go 1.26.0
