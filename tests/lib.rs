//! The end-to-end suite lives in `e2e/` (one test binary, for link time). It drives the real
//! `witness` binary against real OpenSSH peers started per test on loopback ports; nothing is
//! mocked. This library is empty on purpose.
