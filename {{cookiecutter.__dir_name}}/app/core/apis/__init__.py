"""One module per OpenAI API: the request it takes and the events it answers with."""
