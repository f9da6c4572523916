//! A hostile agent cannot make the controller's memory grow beyond a bound of what it sent:
//! a zstd bomb as a listing and an oversized frame are refused as protocol errors naming it.

use std::io::{BufReader, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use transhumance::transport::TransportError;
use transhumance::transport::channel::{Channel, RemoteChannel};
use transhumance::transport::protocol::{
    self, Call, Reply, Request, Response, read_frame, write_frame,
};
use transhumance::tree::xattr::Keep;

/// A stream to an "agent" that answers every call with the bytes `answer` makes of its id.
fn hostile_agent(answer: impl Fn(u64) -> Vec<u8> + Send + 'static) -> RemoteChannel {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let writer = ours.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut requests = BufReader::new(theirs.try_clone().unwrap());
        let mut out = theirs;
        while let Ok(Some(Request::Call { id, .. })) = read_frame::<Request>(&mut requests) {
            if out.write_all(&answer(id)).is_err() {
                break;
            }
        }
    });
    RemoteChannel::new("evil", Box::new(writer), Box::new(ours), Arc::default())
}

fn scan_call() -> Call {
    Call::Scan {
        root: "/var/www".into(),
        exclude: Vec::new(),
        keep: Keep::NONE,
    }
}

/// Peak resident memory of this process (`VmHWM`), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status");
    kib * 1024
}

#[test]
fn a_listing_bomb_is_refused_without_the_memory_it_claims() {
    // 2048 zstd frames of 1 MiB of zeros each: 2 GiB once inflated, from about 80 KiB.
    let frame = zstd::bulk::compress(&vec![0u8; 1 << 20], 19).unwrap();
    let bomb = frame.repeat(2048);
    assert!(bomb.len() < 128 << 10, "{} bytes", bomb.len());
    let reply = {
        let bomb = bomb.clone();
        move |id| {
            let mut bytes = Vec::new();
            write_frame(
                &mut bytes,
                &Response::Reply {
                    id,
                    reply: Reply::Scan(bomb.clone()),
                },
            )
            .unwrap();
            bytes
        }
    };
    let channel = hostile_agent(reply);
    // Reset the peak to what is resident now (Linux: `5` to clear_refs), then measure.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = peak_rss();
    let answer = channel.call_wait(scan_call()).unwrap();
    let refused = transhumance::transport::ssh::scan_reply("evil", answer).unwrap_err();
    let grown = peak_rss().saturating_sub(before);
    match &refused {
        TransportError::Protocol { host, message } => {
            assert_eq!(host, "evil");
            assert!(message.contains("does not decompress within"), "{message}");
        }
        other => panic!("expected a protocol error, got {other:?}"),
    }
    assert!(
        refused
            .to_string()
            .starts_with("host `evil`: protocol error")
    );
    // The bound for what came is a few MiB; the bomb claims 2 GiB. Other tests of this binary
    // run alongside, hence the margin.
    let bound = protocol::inflation_bound(bomb.len(), protocol::MAX_LISTING);
    assert!(bound < 16 << 20, "{bound}");
    assert!(
        grown < 128 << 20,
        "peak memory grew by {} MiB decoding {} KiB",
        grown >> 20,
        bomb.len() >> 10
    );
}

#[test]
fn a_frame_over_the_limit_is_a_protocol_error_naming_the_host() {
    // A length alone, far over the limit: nothing is read behind it.
    let channel = hostile_agent(|_| u32::MAX.to_le_bytes().to_vec());
    match channel.call_wait(scan_call()) {
        Err(TransportError::Protocol { host, message }) => {
            assert_eq!(host, "evil");
            assert!(message.contains("over the limit"), "{message}");
        }
        other => panic!("expected a protocol error, got {other:?}"),
    }
    // And every later call, and the side's own check, say the same.
    assert!(matches!(
        channel.call(scan_call()),
        Err(TransportError::Protocol { .. })
    ));
    assert!(matches!(
        channel.lost_as_error(),
        Some(TransportError::Protocol { .. })
    ));
}
