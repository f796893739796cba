//! Out of file descriptors: the accept loop backs off instead of spinning, and recovers.
//! (Its own test binary: it lowers the process's open-file limit.)

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use weft_net::{BoundedListener, ListenerLimits, bind};

#[tokio::test(start_paused = true)]
async fn out_of_file_descriptors_backs_off_and_recovers() {
    let socket = bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind");
    let mut listener = BoundedListener::new(
        TcpListener::from_std(socket).expect("register"),
        "emfile",
        ListenerLimits::new(100, None),
        None,
    );
    // The kernel completes the handshake; the connection waits in the backlog.
    let _client = std::net::TcpStream::connect(listener.local_addr()).expect("connect");

    // Use up every descriptor the process may open.
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).expect("getrlimit");
    rlimit::setrlimit(rlimit::Resource::NOFILE, 256, hard).expect("setrlimit");
    let mut files = Vec::new();
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(file) => files.push(file),
            Err(err) if err.raw_os_error() == Some(24) => break, // EMFILE
            Err(err) => panic!("unexpected error while using up descriptors: {err}"),
        }
    }

    // Ten (paused-clock) seconds of EMFILE: the pause doubles from 5 ms to 1 s, so about
    // 8 + 9 attempts; a loop without backoff would make millions, one with a fixed 50 ms
    // pause 200.
    let waited = tokio::time::timeout(Duration::from_secs(10), listener.accept()).await;
    assert!(
        waited.is_err(),
        "nothing can be accepted without a descriptor"
    );
    let errors = listener.accept_errors();
    assert!(
        (5..=20).contains(&errors),
        "{errors} failed accepts in 10 s"
    );

    // Descriptors come back: the waiting connection is accepted within the longest pause.
    drop(files);
    let accepted = tokio::time::timeout(Duration::from_secs(2), listener.accept()).await;
    assert!(
        accepted.is_ok(),
        "the connection was not accepted after recovery"
    );
}
