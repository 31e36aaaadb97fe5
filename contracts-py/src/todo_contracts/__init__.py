"""The Todo Chatbot's protobuf contract for Python.

Generated messages and stubs live in todo_contracts.<area>.v1; the CloudEvent
envelope in todo_contracts.envelope; the topic registry in todo_contracts.topics.
"""

__version__ = "0.1.0"
