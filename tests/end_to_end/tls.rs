//! TLS: the server serves wss:// with --tls-cert/--tls-key, and the client trusts a custom CA.

use referee_tests::{make_video, run_client, TestServer};

#[test]
fn wss_works_with_the_servers_certificate_trusted_by_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = referee_tests::self_signed_cert(dir.path());
    let server = TestServer::start_with(|c| {
        c.tls_cert = Some(cert.clone());
        c.tls_key = Some(key.clone());
    });
    let url = format!("wss://localhost:{}", server.addr.port());
    let work = tempfile::tempdir().unwrap();
    let video = make_video(work.path(), "v.avi", 4, 30.0, 160, 120);
    let video = video.to_str().unwrap();

    // Without the CA the certificate is not trusted, and the client says what to do.
    let run = run_client(&[&url, "--video", video]);
    run.assert_failure();
    assert!(run.stderr.contains("TLS failed"), "{}", run.transcript());

    let run = run_client(&[&url, "--video", video, "--ca", cert.to_str().unwrap()]);
    run.assert_success();
    assert!(
        run.stdout.contains(&format!("Connected to {url}/stream")),
        "{}",
        run.transcript()
    );
}
