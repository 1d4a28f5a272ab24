//! Review of `annals dump --decode` (cli/src/decode.rs): a payload cannot
//! make it reserve memory out of proportion to the payload.

mod support;

use std::process::Command;

use support::path;

/// A store value (the stores' envelope: tag, codec, schema) whose body is
/// `levels` nested MessagePack arrays, each claiming as many items as
/// there are bytes left, around `items` nils: the innermost array is
/// whole, every outer one ends short.
fn nested_claims(levels: usize, items: usize) -> Vec<u8> {
    let mut payload = vec![0xA5, 1, 1, 0];
    let mut rest = levels * 5 + items;
    for _ in 0..levels {
        rest -= 5;
        payload.push(0xdd);
        payload.extend_from_slice(&u32::try_from(rest).unwrap().to_be_bytes());
    }
    payload.resize(payload.len() + items, 0xc0);
    payload
}

/// Runs `annals dump DIR --decode` with its address space limited to
/// `limit_kib`, and returns whether it succeeded, with its stderr.
fn dump_decode_within(dir: &std::path::Path, limit_kib: u64) -> (bool, String) {
    let script = format!("ulimit -v {limit_kib} && exec \"$0\" dump \"$1\" --decode > /dev/null");
    let out =
        Command::new("sh").args(["-c", &script, env!("CARGO_BIN_EXE_annals"), path(dir)]).output().expect("run sh");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A 1 MiB payload of 128 nested arrays, each claiming a million items,
/// decodes to a `decode_error` within 1 GiB of address space. Found in
/// review: each array reserved room for every item it claimed before
/// reading one (at most the bytes left, but 128 levels of it and about 70
/// bytes a JSON value), about 9 GiB here, so the process aborted on a
/// failed allocation where it has less, and reserved up to 128 x 70 x 16
/// MiB for a record at the default size limit.
#[test]
fn dump_decode_of_nested_arrays_claiming_every_byte_left_stays_in_proportion() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = annals::Log::open(dir.path(), annals::Options::default()).unwrap();
        log.append("benign", annals::Expectation::Any, nested_claims(1, 1 << 20)).wait().unwrap();
        log.close().wait().unwrap();
    }
    let (ok, stderr) = dump_decode_within(dir.path(), 1 << 20);
    assert!(ok, "the control (one array of a million nils) decodes within the limit: {stderr}");
    {
        let log = annals::Log::open(dir.path(), annals::Options::default()).unwrap();
        log.append("claims", annals::Expectation::Any, nested_claims(128, 1 << 20)).wait().unwrap();
        log.close().wait().unwrap();
    }
    let (ok, stderr) = dump_decode_within(dir.path(), 1 << 20);
    assert!(ok, "128 nested claims decode (to a decode_error) within the limit: {stderr}");
}
