//! Transaction signatures (TSIG, RFC 8945): the key `transfer.tsig_key_file` names, checking a
//! signed request, and signing responses (one, or each message of a transfer in turn) and the
//! NOTIFY requests peerdns sends.
//!
//! The key file is what BIND's `tsig-keygen` prints, one key:
//!
//! ```text
//! key "transfer" {
//!     algorithm hmac-sha256;
//!     secret "base64 secret";
//! };
//! ```
//!
//! Algorithms: hmac-sha256 (the one to use), hmac-sha384, hmac-sha512. The MAC primitives are
//! hickory-proto's (ring); the digest layouts (RFC 8945 section 4.3: request MAC, message,
//! TSIG variables; section 5.3.1: later messages of a transfer cover the prior MAC, the message
//! and the timers only) are written here.
//!
//! Invariants: a request whose signature fails is answered NOTAUTH with the TSIG error (BADKEY
//! and BADSIG unsigned, BADTIME signed, as section 5.2 says) and nothing else; a response to a
//! verified request is signed with the same key; a signed message's TSIG record is its last
//! record and ARCOUNT counts it; truncated MACs are refused (BADSIG).

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::tsig::{
    TSIG, TsigAlgorithm, TsigError, make_tsig_record, signed_bitmessage_to_buf,
};
use hickory_proto::rr::{Name, TSigner};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};

use super::wire::reader::{HEADER_LEN, skip_name};

/// Seconds a signature's time may differ from ours (RFC 8945 section 10 suggests 300).
pub const FUDGE: u16 = 300;
/// Bytes a message keeps free for its TSIG record: the key and algorithm names (at most 255
/// bytes each), the fixed fields, a MAC of up to 64 bytes and 6 bytes of other data.
pub const ROOM: usize = 255 + 10 + 255 + 16 + 64 + 6;

/// The shared key transfers and NOTIFY are signed with.
#[derive(Clone)]
pub struct TsigKey {
    signer: TSigner,
}

impl PartialEq for TsigKey {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
            && self.algorithm() == other.algorithm()
            && self.signer.key() == other.signer.key()
    }
}

impl Eq for TsigKey {}

impl std::fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("TsigKey")
            .field("name", self.name())
            .field("algorithm", self.signer.algorithm())
            .finish()
    }
}

/// Why a key file was refused: the file, the line (1-based; 0 when the file as a whole) and
/// what is wrong there.
#[derive(Debug, thiserror::Error)]
#[error("{path}:{line}: {reason}")]
pub struct KeyFileError {
    /// The key file.
    pub path: String,
    /// The line the problem is on (0: the whole file).
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

impl TsigKey {
    /// A key from its parts; the algorithm is one this module can compute.
    pub fn new(name: Name, algorithm: TsigAlgorithm, secret: Vec<u8>) -> Result<Self, String> {
        if !matches!(
            algorithm,
            TsigAlgorithm::HmacSha256 | TsigAlgorithm::HmacSha384 | TsigAlgorithm::HmacSha512
        ) {
            return Err(format!(
                "algorithm {algorithm} is not supported (use hmac-sha256, hmac-sha384 or hmac-sha512)"
            ));
        }
        if secret.is_empty() {
            return Err("the secret is empty".into());
        }
        let name = name.to_lowercase();
        TSigner::new(secret, algorithm, name, FUDGE)
            .map(|signer| Self { signer })
            .map_err(|error| error.to_string())
    }

    /// Reads the key file at `path` (see the module docs for its form).
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        let text = std::fs::read_to_string(path).map_err(|error| KeyFileError {
            path: path.display().to_string(),
            line: 0,
            reason: format!("cannot read the key file: {error}"),
        })?;
        Self::parse(&text).map_err(|(line, reason)| KeyFileError {
            path: path.display().to_string(),
            line,
            reason,
        })
    }

    /// Parses a key file's text; `Err((line, reason))`.
    pub fn parse(text: &str) -> Result<Self, (usize, String)> {
        let tokens = tokenize(text)?;
        let mut tokens = tokens.iter().peekable();
        expect_token(&mut tokens, "key")?;
        let (name_line, name) = next_word(&mut tokens, "the key's name")?;
        let name = Name::from_ascii(name.trim_matches('"'))
            .map_err(|error| (name_line, format!("the key's name: {error}")))?;
        expect_token(&mut tokens, "{")?;
        let (mut algorithm, mut secret) = (None, None);
        loop {
            let (line, word) = next_word(&mut tokens, "`algorithm`, `secret` or `}`")?;
            match word.as_str() {
                "}" => break,
                "algorithm" => {
                    let (line, value) = next_word(&mut tokens, "the algorithm")?;
                    let value = value.trim_matches('"').to_ascii_lowercase();
                    let value = value.trim_end_matches('.');
                    let parsed = Name::from_ascii(value)
                        .map(TsigAlgorithm::from_name)
                        .map_err(|error| (line, format!("algorithm: {error}")))?;
                    algorithm = Some((line, parsed));
                }
                "secret" => {
                    let (line, value) = next_word(&mut tokens, "the secret")?;
                    let decoded = data_encoding::BASE64
                        .decode(value.trim_matches('"').as_bytes())
                        .map_err(|error| (line, format!("secret: not base64 ({error})")))?;
                    secret = Some(decoded);
                }
                other => return Err((line, format!("unknown key setting `{other}`"))),
            }
            expect_token(&mut tokens, ";")?;
        }
        expect_token(&mut tokens, ";")?;
        if let Some((line, token)) = tokens.next() {
            return Err((*line, format!("one key per file: unexpected `{token}`")));
        }
        let Some((algorithm_line, algorithm)) = algorithm else {
            return Err((name_line, "the key has no `algorithm`".into()));
        };
        let Some(secret) = secret else {
            return Err((name_line, "the key has no `secret`".into()));
        };
        Self::new(name, algorithm, secret).map_err(|reason| (algorithm_line, reason))
    }

    /// The key's name (lower case, fully qualified).
    pub fn name(&self) -> &Name {
        self.signer.signer_name()
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> &TsigAlgorithm {
        self.signer.algorithm()
    }

    /// Signs `message` (its ID is the original ID) and appends the TSIG record: the first
    /// message covers `previous_mac` (a request's MAC, or none for a request) and the TSIG
    /// variables, a later message of a transfer the prior MAC and the timers only. Returns the
    /// MAC, which the next message of a transfer covers.
    pub fn sign(
        &self,
        message: &mut Vec<u8>,
        previous_mac: Option<&[u8]>,
        first: bool,
        error: Option<TsigError>,
        other: Vec<u8>,
    ) -> Vec<u8> {
        let original_id = message
            .get(..2)
            .map_or(0, |id| u16::from_be_bytes([id[0], id[1]]));
        let stub = TSIG::new(
            self.algorithm().clone(),
            now(),
            FUDGE,
            Vec::new(),
            original_id,
            error,
            other,
        );
        let mut covered = Vec::with_capacity(message.len() + 128);
        let encoded = {
            let mut encoder = BinEncoder::new(&mut covered);
            let mut emit = || -> Result<(), hickory_proto::ProtoError> {
                if let Some(previous) = previous_mac {
                    encoder.emit_u16(previous.len() as u16)?;
                    encoder.emit_vec(previous)?;
                }
                encoder.emit_vec(message)?;
                if first {
                    stub.emit_tsig_for_mac(&mut encoder, self.name())?;
                } else {
                    encoder.emit_u16((stub.time >> 32) as u16)?;
                    encoder.emit_u32(stub.time as u32)?;
                    encoder.emit_u16(stub.fudge)?;
                }
                Ok(())
            };
            emit()
        };
        let mac = match encoded.map(|()| self.signer.sign(&covered)) {
            Ok(Ok(mac)) => mac,
            // Not reachable for the supported algorithms; an unsigned message is then
            // refused by the peer rather than sent with a wrong MAC.
            _ => return Vec::new(),
        };
        append_record(
            message,
            &make_tsig_record(self.name().clone(), stub.set_mac(mac.clone())),
        );
        mac
    }

    /// Checks the TSIG a response to our request (whose MAC is `request_mac`) carries.
    pub fn verify_response(&self, response: &[u8], request_mac: &[u8]) -> Result<(), TsigError> {
        let (covered, record) = signed_bitmessage_to_buf(response, Some(request_mac), true)
            .map_err(|_| TsigError::BadSig)?;
        self.verify(&covered, &record.name, &record.data)
    }

    fn verify(&self, covered: &[u8], name: &Name, tsig: &TSIG) -> Result<(), TsigError> {
        if name != self.name() || &tsig.algorithm != self.algorithm() {
            return Err(TsigError::BadKey);
        }
        if self.signer.verify(covered, &tsig.mac).is_err() {
            return Err(TsigError::BadSig);
        }
        if now().abs_diff(tsig.time) > u64::from(tsig.fudge) {
            return Err(TsigError::BadTime);
        }
        Ok(())
    }
}

/// What a request's signature says.
#[derive(Debug)]
pub enum Checked {
    /// No TSIG record.
    Unsigned,
    /// Signed with our key, correctly and in time: answer, and sign the answer.
    Signed(RequestSignature),
    /// Signed, but not acceptably: send this response (NOTAUTH with the TSIG error) alone.
    Failed {
        /// The response to send.
        response: Vec<u8>,
        /// What failed.
        error: TsigError,
    },
}

/// A verified request's signature, which its responses cover.
#[derive(Clone, Debug)]
pub struct RequestSignature {
    mac: Vec<u8>,
}

impl RequestSignature {
    /// Signs `response` to this request (the first or only message).
    pub fn sign_first(&self, key: &TsigKey, response: &mut Vec<u8>) -> Vec<u8> {
        key.sign(response, Some(&self.mac), true, None, Vec::new())
    }

    /// The signer of this request's responses, message after message (a transfer).
    pub fn chain(self, key: TsigKey) -> ResponseChain {
        ResponseChain {
            key,
            previous_mac: self.mac,
            first: true,
        }
    }
}

/// Signs the messages of one response in turn: the first covers the request's MAC and the
/// TSIG variables, each later one the MAC before it and the timers (RFC 8945 section 5.3.1;
/// every message is signed, which the RFC allows and the 100-message rule needs no count for).
#[derive(Debug)]
pub struct ResponseChain {
    key: TsigKey,
    previous_mac: Vec<u8>,
    first: bool,
}

impl ResponseChain {
    /// Signs the next message.
    pub fn sign(&mut self, message: &mut Vec<u8>) {
        self.previous_mac = self.key.sign(
            message,
            Some(&self.previous_mac),
            self.first,
            None,
            Vec::new(),
        );
        self.first = false;
    }
}

/// Checks `request`'s TSIG against `key` (`None`: no key configured, so any signed request is
/// answered BADKEY). A request that is not well formed counts as unsigned: the answer path
/// gives it FORMERR.
pub fn check_request(key: Option<&TsigKey>, request: &[u8]) -> Checked {
    if last_record_type(request) != Some(TSIG_TYPE) {
        return Checked::Unsigned;
    }
    let Ok((covered, record)) = signed_bitmessage_to_buf(request, None, true) else {
        return Checked::Unsigned;
    };
    let verdict = match key {
        Some(key) => key.verify(&covered, &record.name, &record.data),
        None => Err(TsigError::BadKey),
    };
    match (verdict, key) {
        (Ok(()), _) => Checked::Signed(RequestSignature {
            mac: record.data.mac.clone(),
        }),
        (Err(error), key) => {
            let mut response = refusal(request);
            match (error, key) {
                (TsigError::BadTime, Some(key)) => {
                    // Signed, with our time as other data (section 5.2.3).
                    let ours = now().to_be_bytes()[2..].to_vec();
                    key.sign(
                        &mut response,
                        Some(&record.data.mac),
                        true,
                        Some(error),
                        ours,
                    );
                }
                _ => {
                    // Unsigned, naming the key the client used (section 5.2.1, 5.2.2).
                    let tsig = TSIG::new(
                        record.data.algorithm.clone(),
                        now(),
                        FUDGE,
                        Vec::new(),
                        record.data.oid,
                        Some(error),
                        Vec::new(),
                    );
                    append_record(&mut response, &make_tsig_record(record.name.clone(), tsig));
                }
            }
            Checked::Failed { response, error }
        }
    }
}

/// The NOTAUTH response to `request`, with its question (unsigned, no TSIG yet).
pub fn refusal(request: &[u8]) -> Vec<u8> {
    let parsed = Message::from_vec(request).ok();
    let id = request
        .get(..2)
        .map_or(0, |id| u16::from_be_bytes([id[0], id[1]]));
    let op_code = parsed
        .as_ref()
        .map_or(OpCode::Query, |message| message.metadata.op_code);
    let mut response = Message::new(id, MessageType::Response, op_code);
    response.metadata.response_code = ResponseCode::NotAuth;
    if let Some(parsed) = parsed {
        response.queries = parsed.queries;
    }
    response.to_vec().unwrap_or_default()
}

const TSIG_TYPE: u16 = 250;

/// The type of `message`'s last record, read in place.
fn last_record_type(message: &[u8]) -> Option<u16> {
    let header = message.get(..HEADER_LEN)?;
    let count = |i: usize| usize::from(u16::from_be_bytes([header[i], header[i + 1]]));
    let records = count(6) + count(8) + count(10);
    if count(10) == 0 {
        return None;
    }
    let mut at = HEADER_LEN;
    for _ in 0..count(4) {
        at = skip_name(message, at)? + 4;
    }
    let mut last = None;
    for _ in 0..records {
        let end = skip_name(message, at)?;
        let fixed = message.get(end..end + 10)?;
        last = Some(u16::from_be_bytes([fixed[0], fixed[1]]));
        let rdlength = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
        at = end + 10 + rdlength;
    }
    (at == message.len()).then_some(last).flatten()
}

/// Appends `record` to `message`'s additional section.
fn append_record(message: &mut Vec<u8>, record: &impl BinEncodable) {
    let Ok(bytes) = record.to_bytes() else {
        return;
    };
    let Some(count) = message.get_mut(10..12) else {
        return;
    };
    let additional = u16::from_be_bytes([count[0], count[1]]).saturating_add(1);
    count.copy_from_slice(&additional.to_be_bytes());
    message.extend_from_slice(&bytes);
}

/// Seconds since the Unix epoch.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// The key file's words (`{`, `}` and `;` are words of their own; quoted strings one word),
/// each with its line; comments (`#`, `//`) skipped.
fn tokenize(text: &str) -> Result<Vec<(usize, String)>, (usize, String)> {
    let mut tokens = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let mut chars = line.chars().peekable();
        let mut word = String::new();
        let flush = |word: &mut String, tokens: &mut Vec<(usize, String)>| {
            if !word.is_empty() {
                tokens.push((number, std::mem::take(word)));
            }
        };
        while let Some(c) = chars.next() {
            match c {
                '#' => break,
                '/' if chars.peek() == Some(&'/') => break,
                '"' => {
                    flush(&mut word, &mut tokens);
                    let mut quoted = String::from('"');
                    loop {
                        match chars.next() {
                            Some('"') => break,
                            Some(c) => quoted.push(c),
                            None => return Err((number, "unterminated quoted string".into())),
                        }
                    }
                    quoted.push('"');
                    tokens.push((number, quoted));
                }
                '{' | '}' | ';' => {
                    flush(&mut word, &mut tokens);
                    tokens.push((number, c.to_string()));
                }
                c if c.is_whitespace() => flush(&mut word, &mut tokens),
                c => word.push(c),
            }
        }
        flush(&mut word, &mut tokens);
    }
    Ok(tokens)
}

type Tokens<'t> = std::iter::Peekable<std::slice::Iter<'t, (usize, String)>>;

fn next_word(tokens: &mut Tokens<'_>, what: &str) -> Result<(usize, String), (usize, String)> {
    tokens
        .next()
        .map(|(line, word)| (*line, word.clone()))
        .ok_or_else(|| (0, format!("expected {what}, found the end of the file")))
}

fn expect_token(tokens: &mut Tokens<'_>, want: &str) -> Result<(), (usize, String)> {
    match tokens.next() {
        Some((_, token)) if token == want => Ok(()),
        Some((line, token)) => Err((*line, format!("expected `{want}`, found `{token}`"))),
        None => Err((0, format!("expected `{want}`, found the end of the file"))),
    }
}

#[cfg(test)]
mod tests;
