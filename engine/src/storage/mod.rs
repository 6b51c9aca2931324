//! SQLite storage of documents, changes and sync state: the one module of the engine that does I/O.
