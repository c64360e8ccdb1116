from ._eventfd_bridge import Done, Ready, Req, Server

__all__ = ["Server", "Req", "Done", "Ready"]
