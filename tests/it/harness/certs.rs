//! Test certificates made with the `openssl` command line: a CA, a server
//! certificate for 127.0.0.1 it signed, and an unrelated CA. It starts no
//! server; a missing `openssl` or a failed step panics with its stderr.

use super::ScratchDir;

/// A CA, a server certificate for 127.0.0.1 signed by it, and an unrelated CA,
/// made with the `openssl` command line.
pub struct TestCerts {
    pub dir: ScratchDir,
    pub ca_cert: String,
    pub server_cert: String,
    pub server_key: String,
}

impl TestCerts {
    pub fn generate() -> TestCerts {
        let dir = ScratchDir::new("redis-tls");
        let p = |n: &str| dir.0.join(n).display().to_string();
        let run = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .output()
                .expect("cannot run `openssl`: install openssl for the TLS test");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        for ca in ["ca", "other-ca"] {
            run(&[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN=test {ca}"),
                "-keyout",
                &p(&format!("{ca}.key")),
                "-out",
                &p(&format!("{ca}.pem")),
            ]);
        }
        run(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            &p("server.key"),
            "-out",
            &p("server.csr"),
        ]);
        std::fs::write(
            dir.0.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .unwrap();
        run(&[
            "x509",
            "-req",
            "-in",
            &p("server.csr"),
            "-CA",
            &p("ca.pem"),
            "-CAkey",
            &p("ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &p("ext.cnf"),
            "-out",
            &p("server.pem"),
        ]);
        TestCerts {
            ca_cert: p("ca.pem"),
            server_cert: p("server.pem"),
            server_key: p("server.key"),
            dir,
        }
    }

    pub fn other_ca(&self) -> Vec<u8> {
        std::fs::read(self.dir.0.join("other-ca.pem")).unwrap()
    }
}
