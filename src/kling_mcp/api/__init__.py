"""The AceDataCloud wire: the HTTP client and its errors, file uploads, video downloads."""
