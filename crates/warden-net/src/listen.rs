//! Binding with a listen backlog sized for bursts.

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// The floor: std's (and so tokio's) `bind` asks for 128, which drops SYNs in a burst of a
/// few hundred connects and makes those clients wait a full SYN retransmission (1 s).
const MIN_BACKLOG: u32 = 1024;

/// The listen backlog: the kernel's `net.core.somaxconn` (the most it grants anyway), and
/// never less than 1024. Connections past `limits.max_connections` wait here too.
pub fn backlog() -> u32 {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .map_or(MIN_BACKLOG, |n| n.max(MIN_BACKLOG))
}

/// Binds `addr` (with `SO_REUSEADDR`, as std does, so a restart is not refused while old
/// sockets sit in TIME_WAIT) and listens with [`backlog`]. Must run inside a tokio runtime.
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backlog_is_at_least_the_floor() {
        assert!(backlog() >= MIN_BACKLOG);
    }

    #[tokio::test]
    async fn binds_an_ephemeral_port() {
        let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        assert_ne!(addr.port(), 0);
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        listener.accept().await.unwrap();
    }
}

/// Waits until the peer has sent a byte (`Ok(true)`) or closed (`Ok(false)`), reading
/// nothing. `readable()` alone is no such wait: tokio reports a newly registered socket
/// ready until a read says otherwise, so a silent peer would pass it at once.
///
/// A poll function over `poll_peek`, not `peek().await`: every waiting connection holds
/// this future, and tokio's readiness future (an intrusive waiter) is ten times its size.
pub async fn first_byte(stream: &tokio::net::TcpStream) -> io::Result<bool> {
    let mut byte = [0u8; 1];
    let peeked = std::future::poll_fn(|cx| {
        let mut buf = tokio::io::ReadBuf::new(&mut byte);
        stream.poll_peek(cx, &mut buf)
    })
    .await?;
    Ok(peeked == 1)
}

#[cfg(test)]
mod first_byte_tests {
    use std::time::Duration;

    use tokio::io::AsyncWriteExt as _;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waits_for_a_byte_from_a_silent_peer() {
        let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        // Real time, briefly: a silent peer is still silent after 200 ms.
        let early = tokio::time::timeout(Duration::from_millis(200), first_byte(&server)).await;
        assert!(early.is_err(), "returned for a silent peer: {early:?}");
        client.write_all(b"G").await.unwrap();
        assert!(first_byte(&server).await.unwrap());
        drop(client);
        let (server2, client2) = {
            let c = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
                .await
                .unwrap();
            (listener.accept().await.unwrap().0, c)
        };
        drop(client2);
        assert!(!first_byte(&server2).await.unwrap(), "EOF is not a byte");
    }
}
