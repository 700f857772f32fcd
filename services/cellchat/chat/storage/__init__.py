"""Storage adapters implementing `cellchat.chat.app.ports.ChatStore`: embedded (SQLite) and CQL."""
