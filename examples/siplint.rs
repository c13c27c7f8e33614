//! `siplint`: check captured SIP messages.
//!
//! ```text
//! cargo run --example siplint -- FILE...
//! ```
//!
//! Each file is one datagram. For each, one line: `FILE: valid`,
//! `FILE: malformed: <reason>` (it does not parse) or
//! `FILE: rejected <status>: <reason>` (it parses; validation maps it to that
//! status). The exit code is 0 if every file is valid, 1 otherwise, 2 on usage or
//! I/O errors.

use std::process::ExitCode;

use siplink::message::{Message, Role, ValidationOptions};

fn main() -> ExitCode {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() || files.iter().any(|f| f == "-h" || f == "--help") {
        eprintln!("usage: siplint FILE...  (each file is one SIP datagram)");
        return ExitCode::from(2);
    }
    let opts = ValidationOptions {
        role: Role::Syntax,
        supported: Vec::new(),
    };
    let mut all_valid = true;
    for file in &files {
        let bytes = match std::fs::read(file) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{file}: cannot read: {e}");
                return ExitCode::from(2);
            }
        };
        match Message::parse(bytes) {
            Err(e) => {
                all_valid = false;
                println!("{file}: malformed: {e}");
            }
            Ok(msg) => match msg.validate_with(&opts) {
                Ok(()) => println!("{file}: valid"),
                Err(r) => {
                    all_valid = false;
                    println!("{file}: rejected {}: {}", r.status, r.reason);
                }
            },
        }
    }
    if all_valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
