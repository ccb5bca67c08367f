//! Files are precious: no command overwrites a file it reads or another of its outputs, file
//! outputs appear whole or not at all, codes are written 0600, and a closed pipe ends quietly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::Stdio;

use support::*;

const RECIPIENTS: &str = "name,email\nAlice,alice@contoso.com\nBob,bob@contoso.com\n";

fn batch_dir() -> tempfile::TempDir {
    let dir = with_keys();
    std::fs::write(dir.path().join("in.csv"), RECIPIENTS).unwrap();
    dir
}

fn batch_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["batch", "--keys-file", "keys.txt", "--expires-in", "30d"];
    args.extend_from_slice(extra);
    args
}

/// The input and key ring as the test wrote them.
fn assert_untouched(dir: &Path) {
    assert_eq!(
        std::fs::read_to_string(dir.join("in.csv")).unwrap(),
        RECIPIENTS
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("keys.txt")).unwrap(),
        format!("{KEY_7}\n")
    );
}

#[test]
fn batch_refuses_outputs_that_are_inputs_or_each_other() {
    let dir = batch_dir();
    std::fs::hard_link(dir.path().join("in.csv"), dir.path().join("link.csv")).unwrap();
    std::os::unix::fs::symlink("in.csv", dir.path().join("sym.csv")).unwrap();
    std::fs::write(dir.path().join("old.csv"), "keep me\n").unwrap();
    let cases: [(&[&str], &str); 8] = [
        (
            &[
                "--skip-invalid",
                "--rejects",
                "in.csv",
                "in.csv",
                "-o",
                "m.csv",
            ],
            "--rejects in.csv is the same file as the input in.csv",
        ),
        (
            &[
                "--skip-invalid",
                "--rejects",
                "keys.txt",
                "in.csv",
                "-o",
                "m.csv",
            ],
            "is the same file as the keys file",
        ),
        (
            &["in.csv", "-o", "in.csv"],
            "--output in.csv is the same file",
        ),
        (
            &["in.csv", "-o", "./in.csv"],
            "is the same file as the input",
        ),
        (
            &["in.csv", "-o", "link.csv"],
            "is the same file as the input",
        ),
        (
            &["in.csv", "-o", "sym.csv"],
            "is the same file as the input",
        ),
        (
            &["in.csv", "-o", "keys.txt"],
            "is the same file as the keys file",
        ),
        (
            &[
                "--skip-invalid",
                "--rejects",
                "./old.csv",
                "in.csv",
                "-o",
                "old.csv",
            ],
            "are the same file",
        ),
    ];
    for (extra, expected) in cases {
        let out = run(invitegate(dir.path()).args(batch_args(extra)));
        assert_eq!(status(&out), 2, "{extra:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(expected),
            "{extra:?}: {}",
            stderr(&out)
        );
        assert_untouched(dir.path());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("old.csv")).unwrap(),
            "keep me\n"
        );
        assert!(!dir.path().join("m.csv").exists());
    }
}

#[test]
fn shell_redirections_onto_read_files_are_refused() {
    let dir = batch_dir();
    let lines = [
        // Standard output appended to the input or to the key ring.
        "\"$INVITEGATE\" batch --keys-file keys.txt --expires-in 1d in.csv >> in.csv",
        "\"$INVITEGATE\" batch --keys-file keys.txt --expires-in 1d in.csv >> keys.txt",
        // Standard input read from the file the output names.
        "\"$INVITEGATE\" batch --keys-file keys.txt --expires-in 1d - -o in.csv < in.csv",
        // One code appended to the key ring it was minted with.
        "\"$INVITEGATE\" mint --keys-file keys.txt --email a@contoso.com --expires-in 1d >> keys.txt",
        "\"$INVITEGATE\" verify --keys-file keys.txt --email a@contoso.com 243Q1-PYRG0-DVPFF-Z9H9F-NDX66 >> keys.txt",
    ];
    for line in lines {
        let out = shell(dir.path(), line);
        assert_eq!(status(&out), 2, "{line}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("is the same file as"),
            "{line}: {}",
            stderr(&out)
        );
        assert_untouched(dir.path());
    }
}

#[test]
fn a_failed_batch_leaves_no_output_and_says_so() {
    let dir = batch_dir();
    std::fs::write(dir.path().join("merge.csv"), "the previous run\n").unwrap();
    // A row in another encoding halfway: the run stops there.
    let mut input = RECIPIENTS.as_bytes().to_vec();
    input.extend_from_slice(b"Zo\xeb,zoe@contoso.com\n");
    std::fs::write(dir.path().join("latin.csv"), input).unwrap();
    let out = run(invitegate(dir.path()).args(batch_args(&["latin.csv", "-o", "merge.csv"])));
    assert_eq!(status(&out), 2);
    let err = stderr(&out);
    assert!(
        err.contains("no output was written (merge.csv is unchanged)"),
        "{err}"
    );
    assert!(err.contains("line 4 is not valid UTF-8"), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("merge.csv")).unwrap(),
        "the previous run\n"
    );
    assert_eq!(
        names(dir.path()),
        ["in.csv", "keys.txt", "latin.csv", "merge.csv"],
        "no temporary file left"
    );

    // Rejected rows without --skip-invalid: the output would lack them, so it is not written.
    std::fs::write(
        dir.path().join("bad.csv"),
        "email\na@contoso.com\nnot-an-email\n",
    )
    .unwrap();
    let out = run(invitegate(dir.path()).args(batch_args(&["bad.csv", "-o", "new.csv"])));
    assert_eq!(status(&out), 1);
    // A file that was not there is not said to be unchanged.
    assert!(
        stderr(&out).contains("no output was written (new.csv was not created)"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("unchanged"), "{}", stderr(&out));
    assert!(!dir.path().join("new.csv").exists());
}

#[test]
fn outputs_with_codes_are_private_and_complete() {
    let dir = batch_dir();
    std::fs::write(dir.path().join("mixed.csv"), "email\na@contoso.com\nnope\n").unwrap();
    let out = run(invitegate(dir.path()).args(batch_args(&[
        "--skip-invalid",
        "--rejects",
        "rejects.csv",
        "mixed.csv",
        "-o",
        "merge.csv",
    ])));
    assert_eq!(status(&out), 0, "{}", stderr(&out));
    assert_eq!(mode(&dir.path().join("merge.csv")), 0o600);
    assert_eq!(mode(&dir.path().join("rejects.csv")), 0o600);
    let merged = std::fs::read_to_string(dir.path().join("merge.csv")).unwrap();
    assert_eq!(merged.lines().count(), 2, "{merged}");
    let rejects = std::fs::read_to_string(dir.path().join("rejects.csv")).unwrap();
    assert!(
        rejects.starts_with("email,error\nnope,line 3: "),
        "{rejects}"
    );
    // An existing output is replaced by a private file too.
    std::fs::write(dir.path().join("open.csv"), "").unwrap();
    set_mode(&dir.path().join("open.csv"), 0o644);
    let out = run(invitegate(dir.path()).args(batch_args(&["in.csv", "-o", "open.csv"])));
    assert_eq!(status(&out), 0, "{}", stderr(&out));
    assert_eq!(mode(&dir.path().join("open.csv")), 0o600);
    // A device is written to, not replaced.
    let out = run(invitegate(dir.path()).args(batch_args(&["in.csv", "-o", "/dev/null"])));
    assert_eq!(status(&out), 0, "{}", stderr(&out));
    use std::os::unix::fs::FileTypeExt as _;
    let null = Path::new("/dev/null").metadata().unwrap();
    assert!(null.file_type().is_char_device());
}

#[test]
fn a_symbolic_link_is_refused_for_the_merge_file() {
    let dir = batch_dir();
    std::os::unix::fs::symlink("elsewhere.csv", dir.path().join("merge.csv")).unwrap();
    let out = run(invitegate(dir.path()).args(batch_args(&["in.csv", "-o", "merge.csv"])));
    assert_eq!(status(&out), 2);
    assert!(
        stderr(&out).contains("is a symbolic link"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.path().join("elsewhere.csv").exists());
}

/// Starts a batch that reads its recipients from standard input, waits until it has begun its
/// output (the temporary file beside `merge.csv` exists) and is waiting for more input, sends
/// it `signal` and returns what it said and how it ended.
fn batch_stopped_by(signal: &str) -> (tempfile::TempDir, std::process::Output) {
    let dir = with_keys();
    let mut child = KillOnDrop(
        invitegate(dir.path())
            .args(batch_args(&["-", "-o", "merge.csv"]))
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stdin = child.stdin.take().unwrap();
    use std::io::Write as _;
    stdin
        .write_all(b"email\na@contoso.com\nb@contoso.com\n")
        .unwrap();
    stdin.flush().unwrap();
    let started = std::time::Instant::now();
    while !names(dir.path()).iter().any(|n| n.ends_with(".tmp")) {
        assert!(
            started.elapsed() < DEADLINE,
            "no output begun: {:?}",
            names(dir.path())
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    support::signal(child.id(), signal);
    let out = output_of(&mut child, DEADLINE);
    drop(stdin);
    (dir, out)
}

#[test]
fn an_interrupted_batch_leaves_no_output() {
    let (dir, out) = batch_stopped_by("INT");
    assert_eq!(status(&out), 130, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("interrupted; no output was written"),
        "{}",
        stderr(&out)
    );
    assert_eq!(names(dir.path()), ["keys.txt"]);
}

/// SIGTERM (what `kill`, systemd and container platforms send) and SIGHUP (a closed terminal)
/// stop a batch as Ctrl-C does, with 128 + the signal as the exit status.
#[test]
fn a_terminated_or_hung_up_batch_leaves_no_output() {
    for (signal, code) in [("TERM", 143), ("HUP", 129)] {
        let (dir, out) = batch_stopped_by(signal);
        assert_eq!(status(&out), code, "SIG{signal}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("interrupted; no output was written"),
            "SIG{signal}: {}",
            stderr(&out)
        );
        assert_eq!(names(dir.path()), ["keys.txt"], "SIG{signal}");
    }
}

/// Runs `args` with standard output a pipe whose reading end is already closed.
fn into_closed_pipe(dir: &Path, args: &[&str], input: Option<&str>) -> std::process::Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut command = invitegate(dir);
    command.args(args).stdout(writer).stderr(Stdio::piped());
    if input.is_some() {
        command.stdin(Stdio::piped());
    }
    let mut child = command.spawn().unwrap();
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        use std::io::Write as _;
        let _ = stdin.write_all(input.as_bytes());
    }
    wait_with_output_within(child, DEADLINE)
}

#[test]
fn a_closed_pipe_ends_every_command_quietly() {
    let dir = batch_dir();
    let mut big = String::from("email\n");
    for i in 0..20_000 {
        big.push_str(&format!("p{i}@contoso.com\n"));
    }
    std::fs::write(dir.path().join("big.csv"), &big).unwrap();
    let cases: [&[&str]; 9] = [
        &[
            "mint",
            "--keys-file",
            "keys.txt",
            "--email",
            "a@contoso.com",
            "--expires-in",
            "1d",
        ],
        &[
            "verify",
            "--keys-file",
            "keys.txt",
            "--email",
            "alice@contoso.com",
            "--at",
            BEFORE_2030,
            ALICE_CODE,
        ],
        &[
            "verify",
            "--keys-file",
            "keys.txt",
            "--email",
            "bob@contoso.com",
            ALICE_CODE,
        ],
        &["inspect", ALICE_CODE],
        &["inspect", "--json", "hello"],
        &["keygen"],
        &["keygen", "--add-to", "more-keys.txt"],
        &[
            "batch",
            "--keys-file",
            "keys.txt",
            "--expires-in",
            "1d",
            "big.csv",
        ],
        &["keys", "list", "--keys-file", "keys.txt"],
    ];
    for args in cases {
        let out = into_closed_pipe(dir.path(), args, None);
        assert_eq!(status(&out), 141, "{args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out), "", "{args:?}");
    }
    let piped = into_closed_pipe(
        dir.path(),
        &[
            "batch",
            "--keys-file",
            "keys.txt",
            "--expires-in",
            "1d",
            "-",
        ],
        Some(&big),
    );
    assert_eq!(status(&piped), 141, "{}", stderr(&piped));
}
