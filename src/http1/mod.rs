//! Sans-IO HTTP/1.1 codec: bytes in, events out; events in, bytes out.
//! No sockets, no Python, no tokio.
