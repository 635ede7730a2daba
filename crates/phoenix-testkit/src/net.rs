//! Loopback networking helpers: free ports and readiness waits.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral loopback port");
    listener
        .local_addr()
        .expect("ephemeral port has an address")
        .port()
}

/// Wait until something accepts TCP connections on `addr`, or panic after `timeout`.
pub fn wait_for_tcp(addr: SocketAddr, timeout: Duration, what: &str) {
    let deadline = Instant::now() + timeout;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not accept connections on {addr} within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}
