//! Reading Argo CD's watch stream. The grpc-gateway sends one JSON object per
//! line (`{"result":{"type":"MODIFIED","application":{…}}}`, or
//! `{"error":{…}}` when the stream fails server-side); asked for
//! `text/event-stream`, the same objects come as server-sent events
//! (`data: {…}` lines, events ended by a blank line). The parser accepts both.

use serde_json::Value;

/// One message from the stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// `result.type` and `result.application`.
    Event { kind: String, application: Value },
    /// The server reported an error inside the stream.
    Error(String),
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

    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Item> {
        self.buf.extend_from_slice(bytes);
        let mut out = vec![];
        while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            self.line(line, &mut out);
        }
        out
    }

    fn line(&mut self, line: &str, out: &mut Vec<Item>) {
        if line.is_empty() {
            // End of a server-sent event.
            if !self.data.is_empty() {
                let payload = self.data.join("\n");
                self.data.clear();
                out.extend(parse_message(&payload));
            }
        } else if let Some(d) = line.strip_prefix("data:") {
            self.data.push(d.strip_prefix(' ').unwrap_or(d).to_string());
        } else if line.starts_with('{') {
            out.extend(parse_message(line));
        }
        // `event:`, `id:`, `retry:` and `:` comments carry nothing we use.
    }
}

fn parse_message(text: &str) -> Option<Item> {
    let v: Value = serde_json::from_str(text).ok()?;
    if let Some(r) = v.get("result") {
        let application = r.get("application")?.clone();
        let kind = r
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("MODIFIED")
            .to_string();
        return Some(Item::Event { kind, application });
    }
    if let Some(e) = v.get("error") {
        let msg = e
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| e.as_str().map(str::to_string))
            .unwrap_or_else(|| e.to_string());
        return Some(Item::Error(msg));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newline_delimited_in_pieces() {
        let mut p = Parser::new();
        let msg = r#"{"result":{"type":"MODIFIED","application":{"metadata":{"name":"a"}}}}"#;
        let (a, b) = msg.split_at(20);
        assert!(p.feed(a.as_bytes()).is_empty());
        let items = p.feed(format!("{b}\n{msg}\r\n").as_bytes());
        assert_eq!(items.len(), 2);
        assert!(
            matches!(&items[0], Item::Event { kind, application } if kind == "MODIFIED" && application["metadata"]["name"] == "a")
        );
    }

    #[test]
    fn server_sent_events() {
        let mut p = Parser::new();
        let text =
            ": keepalive\nevent: message\ndata: {\"result\":{\"type\":\"ADDED\",\n\n".to_string();
        // A data line that is not complete JSON alone is joined with the next.
        assert!(p.feed(text.as_bytes()).is_empty());
        let items = p.feed(b"data: {\"result\":{\"type\":\"ADDED\",\"application\":{\"metadata\":{\"name\":\"b\"}}}}\n\n");
        assert_eq!(items.len(), 1);
        assert!(matches!(&items[0], Item::Event { kind, .. } if kind == "ADDED"));
    }

    #[test]
    fn stream_errors() {
        let mut p = Parser::new();
        let items = p.feed(b"{\"error\":{\"grpc_code\":7,\"http_code\":403,\"message\":\"permission denied\",\"http_status\":\"Forbidden\"}}\n");
        assert_eq!(items, vec![Item::Error("permission denied".into())]);
    }
}
