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

/// A listing part (`ScanPart`) as a hostile agent would craft it.
fn part_of(paths: &[&str]) -> Vec<u8> {
    let listing = transhumance::tree::ScanSummary {
        entries: paths
            .iter()
            .map(|p| transhumance::tree::Entry {
                path: p.as_bytes().to_vec(),
                kind: transhumance::tree::EntryKind::File,
                size: 1,
                mtime_ns: 0,
                mode: 0o100644,
                uid: 0,
                gid: 0,
                nlink: 1,
                dev: 1,
                ino: 1,
                rdev: 0,
                link_target: None,
            })
            .collect(),
        ..Default::default()
    };
    protocol::pack_scan(&listing)
}

/// An agent that answers a `Scan` with these replies, in order.
fn streaming_agent(replies: Vec<Reply>) -> RemoteChannel {
    let replies = std::sync::Mutex::new(Some(replies));
    hostile_agent(move |id| {
        let mut bytes = Vec::new();
        for reply in replies.lock().unwrap().take().unwrap_or_default() {
            write_frame(&mut bytes, &Response::Reply { id, reply }).unwrap();
        }
        bytes
    })
}

fn streamed_scan(
    channel: &RemoteChannel,
) -> Result<transhumance::tree::ScanSummary, TransportError> {
    transhumance::transport::ssh::scan_streamed("evil", channel.call(scan_call()).unwrap())
}

/// Issue 16: a listing comes in parts; one out of the walk's order (the diff pairs entries by
/// that order), a part that claims the root's fields, or a bomb in a part is refused as a
/// protocol error naming the host. A well-formed stream assembles whole, "a" < "a/b" < "a.b".
#[test]
fn a_crafted_listing_stream_is_a_protocol_error_naming_the_host() {
    let end = |paths: &[&str]| {
        let mut last = protocol::unpack_scan(&part_of(paths)).unwrap();
        last.exists = true;
        Reply::Scan(protocol::pack_scan(&last))
    };
    let good = streaming_agent(vec![
        Reply::ScanPart(part_of(&["a", "a/b"])),
        Reply::ScanPart(part_of(&["a/b/c"])),
        end(&["a.b", "b"]),
    ]);
    let listing = streamed_scan(&good).unwrap();
    let paths: Vec<&[u8]> = listing.entries.iter().map(|e| e.path.as_slice()).collect();
    assert_eq!(paths, [&b"a"[..], b"a/b", b"a/b/c", b"a.b", b"b"]);
    assert!(listing.exists);
    // A sync pairs the parts as they come: each handed on checked, the rest with the root.
    let good = streaming_agent(vec![
        Reply::ScanPart(part_of(&["a", "a/b"])),
        Reply::ScanPart(part_of(&["a/b/c"])),
        end(&["a.b", "b"]),
    ]);
    let mut parts = Vec::new();
    let rest = transhumance::transport::ssh::scan_parts_of(
        "evil",
        good.call(scan_call()).unwrap(),
        &mut |p| {
            parts.push(p.entries.len());
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(
        (parts, rest.entries.len(), rest.exists),
        (vec![2, 1], 2, true)
    );

    let bomb = zstd::bulk::compress(&vec![0u8; 1 << 20], 19)
        .unwrap()
        .repeat(2048);
    let mut rooted = protocol::unpack_scan(&part_of(&["z"])).unwrap();
    rooted.exists = true;
    // A part that says it was listed by root, before an end that says not (a pairing reads
    // which attributes count from the first part).
    let mut as_root = protocol::unpack_scan(&part_of(&["a"])).unwrap();
    as_root.listed_as_root = true;
    for (replies, says) in [
        // Byte order would put "a.b" before "a/b": the walk's order does not.
        (
            vec![Reply::ScanPart(part_of(&["a", "a.b"])), end(&["a/b"])],
            "out of order",
        ),
        (
            vec![Reply::ScanPart(part_of(&["a", "b"])), end(&["b"])],
            "out of order",
        ),
        (
            vec![Reply::ScanPart(protocol::pack_scan(&rooted)), end(&[])],
            "root's fields",
        ),
        (
            vec![Reply::ScanPart(protocol::pack_scan(&as_root)), end(&["b"])],
            "disagree",
        ),
        (
            vec![Reply::ScanPart(bomb), end(&[])],
            "does not decompress within",
        ),
        (vec![Reply::Dirs(Vec::new())], "unexpected answer"),
        (
            vec![Reply::Data(vec![1, 2, 3]), end(&[])],
            "unexpected answer",
        ),
    ] {
        match streamed_scan(&streaming_agent(replies)) {
            Err(TransportError::Protocol { host, message }) => {
                assert_eq!(host, "evil");
                assert!(message.contains(says), "{message}");
            }
            other => panic!("expected a protocol error ({says}), got {other:?}"),
        }
    }
}
