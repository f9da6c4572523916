//! TLS to the journal's PostgreSQL (issue 18), against a real server turned to `ssl = on` with a
//! certificate from a CA made by `openssl` for the test: the journal works under each `sslmode`
//! as libpq reads it, the server itself sees the journal's sessions encrypted, and a server or
//! certificate that fails the check asked for is refused with the host and the check named.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::json;
use transhumance::journal::postgres::{PgConfig, PgStore};
use transhumance::journal::{Journal, JournalError};

use crate::cli::bin;
use crate::harness::make_test_ca;
use crate::journal_pg::{PASSWORD, PASSWORD_ENV, SharedJournal, shared_journal};

/// The shared journal's server serving TLS with a certificate for `localhost` and 127.0.0.1,
/// and a CA that did not sign it.
struct TlsServer {
    j: SharedJournal,
    /// Holds `ca.pem` (the server's CA) and `other/ca.pem`.
    certs: tempfile::TempDir,
}

impl TlsServer {
    fn start() -> TlsServer {
        let j = shared_journal();
        let certs = tempfile::tempdir().unwrap();
        let (_, cert, key) = make_test_ca(certs.path());
        j.pg.serve_tls(&cert, &key, None);
        std::fs::create_dir(certs.path().join("other")).unwrap();
        make_test_ca(&certs.path().join("other"));
        TlsServer { j, certs }
    }

    fn ca(&self) -> PathBuf {
        self.certs.path().join("ca.pem")
    }

    fn other_ca(&self) -> PathBuf {
        self.certs.path().join("other/ca.pem")
    }

    /// The conninfo reaching the server as `host` (at 127.0.0.1 whatever its name), then `tls`.
    fn conninfo(&self, host: &str, tls: &str) -> String {
        format!(
            "host={host} hostaddr=127.0.0.1 port={} dbname=moves user=migrator {tls}",
            self.j.pg.port
        )
    }
}

fn config(conninfo: &str) -> PgConfig {
    PgConfig {
        conninfo: conninfo.into(),
        base_dir: PathBuf::new(),
        password: Some(PASSWORD.into()),
        plan: "tls".into(),
        lease: Duration::from_secs(30),
        holder_info: "tls test".into(),
    }
}

/// Opens the journal, writes an entry and reads it back, taking a lease (a second connection).
fn use_journal(config: PgConfig) -> Result<Journal<serde_json::Value>, JournalError> {
    let mut journal = Journal::over(Box::new(PgStore::open(config)?))?;
    journal.write_about(&json!({"over": "tls"}), None)?;
    assert!(journal.entries()?.contains(&json!({"over": "tls"})));
    journal.leases().expect("leases").try_take("site")?.unwrap();
    Ok(journal)
}

/// What the server says of the journal's sessions (`application_name=ssl version`), from
/// `pg_stat_ssl`: the bytes on the wire are encrypted when it says `t`.
fn sessions_seen_by_the_server(j: &SharedJournal) -> String {
    j.pg.psql(
        "postgres",
        "SELECT string_agg(a.application_name || '=' || s.ssl || coalesce(' ' || s.version, ''), \
         ',' ORDER BY a.application_name) \
         FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.usename = 'migrator'",
    )
}

fn tls_error(result: Result<Journal<serde_json::Value>, JournalError>) -> (String, String) {
    match result {
        Err(JournalError::Tls { host, reason }) => (host, reason),
        Err(other) => panic!("not a TLS error: {other:?}"),
        Ok(_) => panic!("connected"),
    }
}

#[test]
fn the_journal_works_over_verified_tls_and_the_server_sees_it_encrypted() {
    let s = TlsServer::start();
    // verify-full with the CA: the name checked is `host`, the address `hostaddr`; SCRAM is
    // bound to the TLS session (`channel_binding=require` fails without our end-point hash).
    let full = s.conninfo(
        "localhost",
        &format!(
            "sslmode=verify-full sslrootcert={} channel_binding=require",
            s.ca().display()
        ),
    );
    let journal = use_journal(config(&full)).unwrap();
    assert_eq!(
        sessions_seen_by_the_server(&s.j),
        "transhumance journal=true TLSv1.3,transhumance leases=true TLSv1.3"
    );
    drop(journal);

    // A relative `sslrootcert` is found in the plan's directory.
    let mut relative = config(&s.conninfo("127.0.0.1", "sslmode=verify-full sslrootcert=ca.pem"));
    relative.base_dir = s.certs.path().to_owned();
    drop(use_journal(relative).unwrap());

    // verify-ca checks the chain, not the name; require (no root certificate) checks neither.
    let ca = format!("sslmode=verify-ca sslrootcert={}", s.ca().display());
    drop(use_journal(config(&s.conninfo("db.example.test", &ca))).unwrap());
    let journal = use_journal(config(&s.conninfo("db.example.test", "sslmode=require"))).unwrap();
    assert!(
        sessions_seen_by_the_server(&s.j).contains("transhumance journal=true"),
        "{}",
        sessions_seen_by_the_server(&s.j)
    );
    drop(journal);
    // The URL form says the same.
    let url = format!(
        "postgresql://migrator@localhost:{}/moves?sslmode=verify-full&sslrootcert={}",
        s.j.pg.port,
        s.ca().display()
    );
    drop(use_journal(config(&url)).unwrap());
}

#[test]
fn a_certificate_that_fails_the_check_is_refused_naming_the_host_and_the_check() {
    let s = TlsServer::start();
    let ca = s.ca().display().to_string();
    let other = s.other_ca().display().to_string();

    // The certificate names localhost and 127.0.0.1, not db.example.test.
    let wrong_name = s.conninfo(
        "db.example.test",
        &format!("sslmode=verify-full sslrootcert={ca}"),
    );
    let err = PgStore::open(config(&wrong_name)).err().unwrap();
    let text = err.to_string();
    assert!(
        text.starts_with("journal: PostgreSQL server `db.example.test`: its certificate is not valid for the name `db.example.test` (`sslmode=verify-full` checks the name"),
        "{text}"
    );
    assert!(!text.contains(PASSWORD));

    // Another CA (of the same name: an impostor), under verify-full and under require with a
    // root certificate (libpq checks the chain then too).
    for tls in [
        format!("sslmode=verify-full sslrootcert={other}"),
        format!("sslmode=require sslrootcert={other}"),
    ] {
        let (host, reason) = tls_error(use_journal(config(&s.conninfo("localhost", &tls))));
        assert_eq!(host, "localhost");
        assert!(
            reason.contains(&format!(
                "its certificate does not chain to the CA file `{other}` (`sslrootcert`) (bad signature; `sslmode="
            )),
            "{reason}"
        );
    }
    // verify-full without a CA file trusts the public web roots only.
    let (_, reason) = tls_error(use_journal(config(
        &s.conninfo("localhost", "sslmode=verify-full"),
    )));
    assert!(
        reason.contains(
            "does not chain to the public web roots (no `sslrootcert` given) (unknown issuer; `sslmode=verify-full`)"
        ),
        "{reason}"
    );
    // A CA file that cannot be read is the plan's fault: invalid input, nothing connected.
    let missing = s.conninfo(
        "localhost",
        "sslmode=verify-full sslrootcert=/nonexistent/ca.pem",
    );
    let err = PgStore::open(config(&missing)).err().unwrap();
    assert!(
        matches!(&err, JournalError::Invalid(m) if m.contains("cannot read `sslrootcert` `/nonexistent/ca.pem`")),
        "{err:?}"
    );
}

#[test]
fn a_server_without_tls_is_refused_under_require_and_used_plain_under_prefer() {
    let j = shared_journal();
    for mode in ["require", "verify-full"] {
        let conninfo = format!("{} sslmode={mode}", j.conninfo);
        let (host, reason) = tls_error(use_journal(config(&conninfo)));
        assert_eq!(host, "127.0.0.1");
        assert!(
            reason.starts_with(&format!(
                "the server refuses TLS, and `sslmode={mode}` requires it"
            )),
            "{reason}"
        );
    }
    // prefer (libpq's default, written or not) falls back to a plain session.
    for conninfo in [format!("{} sslmode=prefer", j.conninfo), j.conninfo.clone()] {
        drop(use_journal(config(&conninfo)).unwrap());
    }
    let journal = use_journal(config(&format!("{} sslmode=prefer", j.conninfo))).unwrap();
    assert_eq!(
        sessions_seen_by_the_server(&j),
        "transhumance journal=false,transhumance leases=false"
    );
    drop(journal);
}

/// Runs `openssl` in `dir`, or fails the test with its output.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_client_certificate_logs_in_where_the_server_asks_for_one() {
    let s = TlsServer::start();
    let d = s.certs.path();
    s.j.pg
        .serve_tls(&d.join("server.pem"), &d.join("server.key"), Some(&s.ca()));
    s.j.pg.set_hba("hostssl all migrator 127.0.0.1/32 cert\n");
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut req = vec!["req"];
    req.extend(ec);
    req.extend([
        "-keyout",
        "client.key",
        "-out",
        "client.csr",
        "-subj",
        "/CN=migrator",
    ]);
    openssl(d, &req);
    std::fs::write(d.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "client.pem",
            "-days",
            "2",
            "-extfile",
            "client.ext",
        ],
    );
    let tls = format!(
        "sslmode=verify-full sslrootcert={} sslcert={} sslkey={}",
        s.ca().display(),
        d.join("client.pem").display(),
        d.join("client.key").display()
    );
    let mut with_cert = config(&s.conninfo("localhost", &tls));
    with_cert.password = None;
    drop(use_journal(with_cert).unwrap());

    // Without one, the server's refusal comes back in its own words.
    let without = format!("sslmode=verify-full sslrootcert={}", s.ca().display());
    let err = PgStore::open(config(&s.conninfo("localhost", &without)))
        .err()
        .unwrap();
    assert!(
        matches!(&err, JournalError::Store { message, .. } if message.contains("certificate")),
        "{err:?}"
    );
}

/// Through the CLI: a plan with verify-full and a CA file next to it works; a wrong name is a
/// runtime failure (exit 1) naming the host; a bad `sslmode` is the plan's fault (exit 2) at its
/// line and column.
#[test]
fn the_plan_asks_for_tls_and_its_mistakes_are_located() {
    let s = TlsServer::start();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::copy(s.ca(), w.join("journal-ca.pem")).unwrap();
    let status = |conninfo: &str| {
        let plan = w.join("plan.yaml");
        std::fs::write(
            &plan,
            format!(
                "version: 1\nname: tls-plan\nstate_dir: state\nstate:\n  postgres: \"{conninfo}\"\n  \
                 password_env: {PASSWORD_ENV}\nsites: []\n"
            ),
        )
        .unwrap();
        let out = bin()
            .arg("status")
            .arg(&plan)
            .current_dir("/")
            .env(PASSWORD_ENV, PASSWORD)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = status(&s.conninfo(
        "localhost",
        "sslmode=verify-full sslrootcert=journal-ca.pem",
    ));
    assert_eq!(code, Some(0), "{err}");

    let (code, err) = status(&s.conninfo(
        "db.example.test",
        "sslmode=verify-full sslrootcert=journal-ca.pem",
    ));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(
            "PostgreSQL server `db.example.test`: its certificate is not valid for the name"
        ),
        "{err}"
    );

    let (code, err) = status(&s.conninfo("localhost", "sslmode=verify"));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("plan.yaml:5:13: error: connection settings: `sslmode=verify`: expected"),
        "{err}"
    );
    assert!(!err.contains(PASSWORD));
}
