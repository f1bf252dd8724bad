use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::tsig::{TsigAlgorithm, TsigError};
use hickory_proto::rr::{Name, RecordType, TSigner};

use super::*;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn key() -> TsigKey {
    TsigKey::new(
        Name::from_ascii("transfer.").unwrap(),
        TsigAlgorithm::HmacSha256,
        SECRET.to_vec(),
    )
    .unwrap()
}

/// hickory's own signer (a second implementation) for `name` and `secret`.
fn client(name: &str, secret: &[u8]) -> TSigner {
    TSigner::new(
        secret.to_vec(),
        TsigAlgorithm::HmacSha256,
        Name::from_ascii(name).unwrap(),
        300,
    )
    .unwrap()
}

fn axfr_request() -> Message {
    let mut message = Message::new(0x1234, MessageType::Query, OpCode::Query);
    message.add_query(Query::query(
        Name::from_ascii("cluster.local.").unwrap(),
        RecordType::AXFR,
    ));
    message
}

/// `message` signed by `signer` at `time`, and hickory's verifier of the responses.
fn signed(
    mut message: Message,
    signer: &TSigner,
    time: u64,
) -> (Vec<u8>, hickory_proto::rr::TSigVerifier) {
    let (record, verifier) = signer.sign_message(&message, time).unwrap();
    message.set_signature(record);
    (message.to_vec().unwrap(), verifier.unwrap())
}

fn response_to(request: &Message, answers: usize) -> Vec<u8> {
    let mut response = Message::new(request.metadata.id, MessageType::Response, OpCode::Query);
    response.queries = request.queries.clone();
    for _ in 0..answers {
        response.answers.push(hickory_proto::rr::Record::from_rdata(
            Name::from_ascii("a.cluster.local.").unwrap(),
            5,
            hickory_proto::rr::RData::A(std::net::Ipv4Addr::new(10, 0, 0, 1).into()),
        ));
    }
    response.to_vec().unwrap()
}

#[test]
fn the_key_file_tsig_keygen_prints_is_read() {
    let text = "# made by tsig-keygen\nkey \"Transfer.Example\" {\n\talgorithm hmac-sha256;\n\tsecret \"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\";\n};\n";
    let key = TsigKey::parse(text).unwrap();
    assert_eq!(key.name(), &Name::from_ascii("transfer.example.").unwrap());
    assert_eq!(key.algorithm(), &TsigAlgorithm::HmacSha256);
    // The secret is the one encoded: hickory's signer with it verifies our signature.
    let (request, _) = signed(axfr_request(), &client("transfer.example.", SECRET), now());
    assert!(matches!(
        check_request(Some(&key), &request),
        Checked::Signed(_)
    ));
}

#[test]
fn key_file_errors_name_the_line_and_the_problem() {
    let cases = [
        (
            "key \"k\" {\n algorithm hmac-sha256;\n};\n",
            1,
            "no `secret`",
        ),
        (
            "key \"k\" {\n algorithm hmac-sha256;\n secret \"not base64!\";\n};\n",
            3,
            "not base64",
        ),
        (
            "key \"k\" {\n algorithm hmac-md5;\n secret \"MDEy\";\n};\n",
            2,
            "not supported",
        ),
        (
            "key \"k\" {\n algorithm hmac-sha256;\n colour blue;\n};\n",
            3,
            "unknown key setting `colour`",
        ),
        (
            "key \"k\" {\n algorithm hmac-sha256;\n secret \"MDEy\"\n};\n",
            4,
            "expected `;`",
        ),
        (
            "key \"k\" { algorithm hmac-sha256; secret \"MDEy\"; };\nkey \"j\" {};\n",
            2,
            "one key per file",
        ),
        ("secret \"MDEy\";\n", 1, "expected `key`"),
        (
            "key \"k\" {\n algorithm \"hmac-sha256;\n",
            2,
            "unterminated",
        ),
    ];
    for (text, line, reason) in cases {
        let Err((at, said)) = TsigKey::parse(text) else {
            panic!("accepted {text:?}");
        };
        assert_eq!(at, line, "{text:?}: {said}");
        assert!(said.contains(reason), "{text:?}: {said}");
    }
    let missing = TsigKey::load(Path::new("/nonexistent/tsig.key")).unwrap_err();
    assert!(
        missing
            .to_string()
            .starts_with("/nonexistent/tsig.key:0: cannot read")
    );
}

#[test]
fn the_secret_never_shows_in_debug_output() {
    let shown = format!("{:?}", key());
    assert!(shown.contains("transfer."), "{shown}");
    assert!(!shown.contains("0123456789abcdef"), "{shown}");
}

#[test]
fn an_unsigned_request_is_unsigned() {
    let request = axfr_request().to_vec().unwrap();
    assert!(matches!(
        check_request(Some(&key()), &request),
        Checked::Unsigned
    ));
    assert!(matches!(check_request(None, &request), Checked::Unsigned));
    assert!(matches!(
        check_request(Some(&key()), b"\x12"),
        Checked::Unsigned
    ));
}

fn failure(checked: Checked) -> (Message, TsigError) {
    match checked {
        Checked::Failed { response, error } => (Message::from_vec(&response).unwrap(), error),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn a_request_signed_with_another_key_or_secret_is_notauth_with_the_tsig_error() {
    let (other_name, _) = signed(axfr_request(), &client("other.", SECRET), now());
    let (response, error) = failure(check_request(Some(&key()), &other_name));
    assert_eq!(error, TsigError::BadKey);
    assert_eq!(response.metadata.response_code, ResponseCode::NotAuth);
    let tsig = response
        .signature()
        .expect("a TSIG record naming the error");
    assert_eq!(tsig.data.error, Some(TsigError::BadKey));
    assert!(tsig.data.mac.is_empty(), "BADKEY is unsigned");
    assert_eq!(response.queries, axfr_request().queries);

    let (wrong_secret, _) = signed(
        axfr_request(),
        &client("transfer.", b"another secret"),
        now(),
    );
    let (response, error) = failure(check_request(Some(&key()), &wrong_secret));
    assert_eq!(error, TsigError::BadSig);
    assert_eq!(
        response.signature().unwrap().data.error,
        Some(TsigError::BadSig)
    );

    let (no_key_here, _) = signed(axfr_request(), &client("transfer.", SECRET), now());
    let (_, error) = failure(check_request(None, &no_key_here));
    assert_eq!(error, TsigError::BadKey);
}

#[test]
fn a_request_signed_too_long_ago_is_badtime_and_signed() {
    let (late, mut verifier) = signed(axfr_request(), &client("transfer.", SECRET), now() - 3600);
    let Checked::Failed { response, error } = check_request(Some(&key()), &late) else {
        panic!("accepted a signature an hour old");
    };
    assert_eq!(error, TsigError::BadTime);
    let parsed = Message::from_vec(&response).unwrap();
    let tsig = &parsed.signature().unwrap().data;
    assert_eq!(tsig.error, Some(TsigError::BadTime));
    assert_eq!(tsig.other.len(), 6, "our time, 48 bits");
    // hickory checks the MAC, then refuses the time window: the MAC itself was right.
    let verdict = verifier.verify(&response).unwrap_err().to_string();
    assert!(verdict.contains("outdated"), "{verdict}");
}

#[test]
fn a_transfer_signed_message_by_message_verifies_in_hickory() {
    let request = axfr_request();
    let (bytes, mut verifier) = signed(request.clone(), &client("transfer.", SECRET), now());
    let Checked::Signed(signature) = check_request(Some(&key()), &bytes) else {
        panic!("a correctly signed request was not accepted");
    };
    let key = key();
    let mut first = response_to(&request, 3);
    let mut mac = signature.sign_first(&key, &mut first);
    verifier.verify(&first).expect("the first message verifies");
    for _ in 0..3 {
        let mut next = response_to(&request, 2);
        mac = key.sign(&mut next, Some(&mac), false, None, Vec::new());
        verifier.verify(&next).expect("each later message verifies");
    }
    // A message signed as if it were a first one does not verify as a later one.
    let mut wrong = response_to(&request, 1);
    key.sign(&mut wrong, Some(&mac), true, None, Vec::new());
    assert!(verifier.verify(&wrong).is_err());
}

#[test]
fn a_signed_notify_verifies_and_its_signed_answer_is_checked() {
    let key = key();
    let mut notify = Message::new(7, MessageType::Query, OpCode::Notify);
    notify.add_query(Query::query(
        Name::from_ascii("cluster.local.").unwrap(),
        RecordType::SOA,
    ));
    let mut bytes = notify.to_vec().unwrap();
    let mac = key.sign(&mut bytes, None, true, None, Vec::new());
    let Checked::Signed(signature) = check_request(Some(&key), &bytes) else {
        panic!("our own signed NOTIFY does not verify");
    };
    let mut answer = Message::new(7, MessageType::Response, OpCode::Notify);
    answer.queries = notify.queries.clone();
    let mut answer = answer.to_vec().unwrap();
    signature.sign_first(&key, &mut answer);
    assert_eq!(key.verify_response(&answer, &mac), Ok(()));
    assert_eq!(
        key.verify_response(&answer, b"another request's mac"),
        Err(TsigError::BadSig)
    );
    let unsigned = Message::new(7, MessageType::Response, OpCode::Notify)
        .to_vec()
        .unwrap();
    assert!(key.verify_response(&unsigned, &mac).is_err());
}

#[test]
fn a_signed_ixfr_with_its_soa_and_edns_verifies() {
    let apex = Name::from_ascii("cluster.local.").unwrap();
    let mut message = Message::new(0x2222, MessageType::Query, OpCode::Query);
    message.add_query(Query::query(apex.clone(), RecordType::IXFR));
    let soa = hickory_proto::rr::rdata::SOA::new(apex.clone(), apex.clone(), 7, 1, 1, 1, 1);
    message.add_authority(hickory_proto::rr::Record::from_rdata(
        apex,
        0,
        hickory_proto::rr::RData::SOA(soa),
    ));
    message.set_edns(hickory_proto::op::Edns::new());
    let (request, _) = signed(message, &client("transfer.", SECRET), now());
    assert_eq!(last_record_type(&request), Some(TSIG_TYPE));
    assert!(matches!(
        check_request(Some(&key()), &request),
        Checked::Signed(_)
    ));
}
