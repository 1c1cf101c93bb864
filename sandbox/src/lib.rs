//! The dataop sandbox (filled by the sandbox issue).
