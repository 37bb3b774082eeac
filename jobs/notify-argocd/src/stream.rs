//! Reading Argo CD's watch stream. The grpc-gateway sends one JSON object per
//! line (`{"result":{"type":"MODIFIED","application":{…}}}`, or
//! `{"error":{…}}` when the stream fails server-side); asked for
//! `text/event-stream`, the same objects come as server-sent events
//! (`data: {…}` lines, events ended by a blank line). The parser accepts both.

use crate::model::{Application, StreamLine};

/// One message from the stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// `result.type` and `result.application`.
    Event {
        kind: String,
        application: Box<Application>,
    },
    /// The server reported an error inside the stream.
    Error(String),
}

/// A stream message that is not a `{"result"}` or `{"error"}` object of
/// the spec's shape.
#[derive(Debug, thiserror::Error)]
pub enum Malformed {
    #[error("a stream message is not a watch event: {0}")]
    Json(#[from] serde_json::Error),
    #[error("a stream message holds neither `result` nor `error`")]
    Empty,
}

/// Incremental parser: feed it bytes as they arrive.
#[derive(Debug, Default)]
pub struct Parser {
    buf: Vec<u8>,
    data: Vec<String>,
}

impl Parser {
    pub fn new() -> Self {
        Self::default()
    }

    /// The complete messages in what has arrived so far; the first
    /// malformed one is an error.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Item>, Malformed> {
        self.buf.extend_from_slice(bytes);
        let mut out = vec![];
        while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            self.line(line, &mut out)?;
        }
        Ok(out)
    }

    fn line(&mut self, line: &str, out: &mut Vec<Item>) -> Result<(), Malformed> {
        if line.is_empty() {
            // End of a server-sent event.
            if !self.data.is_empty() {
                let payload = self.data.join("\n");
                self.data.clear();
                out.push(parse_message(&payload)?);
            }
        } else if let Some(d) = line.strip_prefix("data:") {
            self.data.push(d.strip_prefix(' ').unwrap_or(d).to_string());
        } else if line.starts_with('{') {
            out.push(parse_message(line)?);
        }
        // `event:`, `id:`, `retry:` and `:` comments carry nothing we use.
        Ok(())
    }
}

fn parse_message(text: &str) -> Result<Item, Malformed> {
    let line: StreamLine = serde_json::from_str(text)?;
    match (line.result, line.error) {
        (Some(r), _) => Ok(Item::Event {
            kind: r.kind.unwrap_or_else(|| "MODIFIED".into()),
            application: Box::new(r.application),
        }),
        (None, Some(e)) => Ok(Item::Error(e.message.unwrap_or_else(|| {
            format!(
                "stream error (gRPC code {}, HTTP {})",
                e.grpc_code.map_or("-".into(), |c| c.to_string()),
                e.http_code.map_or("-".into(), |c| c.to_string())
            )
        }))),
        (None, None) => Err(Malformed::Empty),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newline_delimited_in_pieces() {
        let mut p = Parser::new();
        let msg = r#"{"result":{"type":"MODIFIED","application":{"metadata":{"name":"a"}}}}"#;
        let (a, b) = msg.split_at(20);
        assert!(p.feed(a.as_bytes()).unwrap().is_empty());
        let items = p.feed(format!("{b}\n{msg}\r\n").as_bytes()).unwrap();
        assert_eq!(items.len(), 2);
        assert!(
            matches!(&items[0], Item::Event { kind, application } if kind == "MODIFIED" && application.name() == "a")
        );
    }

    #[test]
    fn server_sent_events() {
        let mut p = Parser::new();
        let text =
            ": keepalive\nevent: message\ndata: {\"result\":{\"type\":\"ADDED\",\n".to_string();
        // A data line that is not complete JSON alone is joined with the next.
        assert!(p.feed(text.as_bytes()).unwrap().is_empty());
        let items = p
            .feed(b"data: \"application\":{\"metadata\":{\"name\":\"b\"}}}}\n\n")
            .unwrap();
        assert_eq!(items.len(), 1);
        assert!(matches!(&items[0], Item::Event { kind, .. } if kind == "ADDED"));
    }

    #[test]
    fn stream_errors() {
        let mut p = Parser::new();
        let items = p.feed(b"{\"error\":{\"grpc_code\":7,\"http_code\":403,\"message\":\"permission denied\",\"http_status\":\"Forbidden\"}}\n").unwrap();
        assert_eq!(items, vec![Item::Error("permission denied".into())]);
    }

    #[test]
    fn malformed_messages_are_errors() {
        for line in [
            "{\"result\":{\"type\":\"MODIFIED\"}}\n",
            "{\"result\":{\"application\":{\"metadata\":{\"name\":7}}}}\n",
            "{\"something\":1}\n",
            "{not json\n",
        ] {
            assert!(Parser::new().feed(line.as_bytes()).is_err(), "{line}");
        }
    }
}
