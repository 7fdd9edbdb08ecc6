//! Constrained decoding of tool calls: a byte-level automaton that accepts exactly the JSON
//! texts `{"name": <tool name>, "arguments": <that tool's arguments>}` allowed by the tools'
//! schemas, the validator that checks a parsed call against its schema, and the prompt section
//! that tells a model which tools exist.
//!
//! Supported schema subset (see [`super::ToolSpec`]): an object whose properties are strings
//! (optionally with `enum`), integers, numbers or booleans, with a `required` list. Keys are
//! emitted in any order but each at most once; `name` comes before `arguments`; at most
//! [`MAX_WS`] whitespace bytes between tokens; strings at most [`MAX_STRING`] bytes, numbers at
//! most [`MAX_NUMBER`] bytes, so every accepted text is finite.
//!
//! Backend-neutral: nothing here knows about a tokenizer. A decoder asks
//! [`ToolCallMatcher::accepts`] whether a candidate token's bytes keep the text valid.

use std::sync::Arc;

use serde_json::Value;

use super::{ToolCall, ToolSpec};

/// Most whitespace bytes allowed between two JSON tokens.
pub const MAX_WS: u8 = 2;
/// Longest string value, in bytes.
pub const MAX_STRING: usize = 256;
/// Longest number, in bytes.
pub const MAX_NUMBER: usize = 18;

/// Type of one argument.
#[derive(Debug, Clone, PartialEq)]
pub enum ArgType {
    /// A string, optionally one of a fixed list.
    String(Option<Vec<String>>),
    /// An integer.
    Integer,
    /// Any JSON number.
    Number,
    /// `true` or `false`.
    Boolean,
}

/// The arguments schema of one tool, in the supported subset.
#[derive(Debug, Clone, PartialEq)]
pub struct ArgSchema {
    /// Properties in schema order.
    pub properties: Vec<(String, ArgType)>,
    /// Names of required properties.
    pub required: Vec<String>,
}

impl ArgSchema {
    /// Parse a JSON schema; errors name what is outside the supported subset.
    pub fn parse(schema: &Value) -> Result<Self, String> {
        let obj = schema
            .as_object()
            .ok_or_else(|| "the arguments schema is not a JSON object".to_string())?;
        if let Some(t) = obj.get("type") {
            if t != "object" {
                return Err(format!(
                    "the arguments schema has type {t}, expected \"object\""
                ));
            }
        }
        let mut properties = Vec::new();
        if let Some(props) = obj.get("properties") {
            let props = props
                .as_object()
                .ok_or_else(|| "`properties` is not an object".to_string())?;
            for (name, p) in props {
                let ty = p
                    .get("type")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("property `{name}` has no string `type`"))?;
                let ty = match ty {
                    "string" => match p.get("enum") {
                        None => ArgType::String(None),
                        Some(Value::Array(vals)) if !vals.is_empty() => ArgType::String(Some(
                            vals.iter()
                                .map(|v| {
                                    v.as_str().map(str::to_string).ok_or_else(|| {
                                        format!("property `{name}`: enum value {v} is not a string")
                                    })
                                })
                                .collect::<Result<_, _>>()?,
                        )),
                        Some(other) => {
                            return Err(format!(
                                "property `{name}`: enum {other} is not a non-empty array"
                            ))
                        }
                    },
                    "integer" => ArgType::Integer,
                    "number" => ArgType::Number,
                    "boolean" => ArgType::Boolean,
                    other => {
                        return Err(format!(
                            "property `{name}` has type `{other}`; supported: string, integer, number, boolean"
                        ))
                    }
                };
                properties.push((name.clone(), ty));
            }
        }
        let mut required = Vec::new();
        if let Some(req) = obj.get("required") {
            let req = req
                .as_array()
                .ok_or_else(|| "`required` is not an array".to_string())?;
            for r in req {
                let r = r
                    .as_str()
                    .ok_or_else(|| format!("`required` entry {r} is not a string"))?;
                if !properties.iter().any(|(n, _)| n == r) {
                    return Err(format!("required property `{r}` is not in `properties`"));
                }
                required.push(r.to_string());
            }
        }
        Ok(Self {
            properties,
            required,
        })
    }

    /// Check parsed arguments: an object, every required property present, no unknown
    /// property, every value of the right type (and in its enum).
    pub fn validate(&self, args: &Value) -> Result<(), String> {
        let obj = args
            .as_object()
            .ok_or_else(|| format!("arguments {args} are not a JSON object"))?;
        for r in &self.required {
            if !obj.contains_key(r) {
                return Err(format!("required argument `{r}` is missing"));
            }
        }
        for (k, v) in obj {
            let ty = self
                .properties
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, t)| t)
                .ok_or_else(|| format!("unknown argument `{k}`"))?;
            let ok = match ty {
                ArgType::String(None) => v.is_string(),
                ArgType::String(Some(vals)) => {
                    v.as_str().is_some_and(|s| vals.iter().any(|e| e == s))
                }
                ArgType::Integer => v.is_i64() || v.is_u64(),
                ArgType::Number => v.is_number(),
                ArgType::Boolean => v.is_boolean(),
            };
            if !ok {
                return Err(format!("argument `{k}` = {v} does not match {ty:?}"));
            }
        }
        Ok(())
    }
}

/// Validate `args` against a JSON schema in the supported subset.
pub fn validate_arguments(schema: &Value, args: &Value) -> Result<(), String> {
    ArgSchema::parse(schema)?.validate(args)
}

/// Parse and validate a tool call's JSON text against `tools`.
pub fn parse_tool_call(tools: &[ToolSpec], text: &str) -> Result<ToolCall, String> {
    let v: Value =
        serde_json::from_str(text.trim()).map_err(|e| format!("tool call is not JSON: {e}"))?;
    let name = v
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| "tool call has no string `name`".to_string())?;
    let tool = tools
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| format!("unknown tool `{name}`"))?;
    let args = v
        .get("arguments")
        .cloned()
        .unwrap_or(Value::Object(Default::default()));
    validate_arguments(&tool.parameters, &args)?;
    Ok(ToolCall {
        name: name.to_string(),
        arguments: args,
    })
}

/// The tool-call grammar for a set of tools.
#[derive(Debug, Clone)]
pub struct ToolGrammar {
    tools: Arc<Vec<(String, ArgSchema)>>,
}

impl ToolGrammar {
    /// Build from tool specs; errors name the tool whose schema is unsupported.
    pub fn new(tools: &[ToolSpec]) -> Result<Self, String> {
        if tools.is_empty() {
            return Err("no tools given".into());
        }
        let tools = tools
            .iter()
            .map(|t| {
                ArgSchema::parse(&t.parameters)
                    .map(|s| (t.name.clone(), s))
                    .map_err(|e| format!("tool `{}`: {e}", t.name))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            tools: Arc::new(tools),
        })
    }

    /// A matcher at the start of the text.
    pub fn matcher(&self) -> ToolCallMatcher {
        ToolCallMatcher {
            tools: self.tools.clone(),
            tool: None,
            stack: vec![Frame::Object(ObjFrame {
                top: true,
                seen: Vec::new(),
                state: ObjState::Open,
                key: Vec::new(),
            })],
            ws: 0,
            complete: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ObjState {
    Open,
    KeyOrClose,
    Key,
    InKey,
    Colon,
    Value,
    CommaOrClose,
}

#[derive(Debug, Clone)]
struct ObjFrame {
    /// The `{"name", "arguments"}` wrapper (else the chosen tool's arguments).
    top: bool,
    /// Keys already given.
    seen: Vec<String>,
    state: ObjState,
    key: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Num {
    Sign,
    Zero,
    Int,
    Dot,
    Frac,
    Exp,
    ExpSign,
    ExpInt,
}

#[derive(Debug, Clone)]
enum Frame {
    Object(ObjFrame),
    Str {
        choices: Option<Vec<String>>,
        buf: Vec<u8>,
        escape: bool,
    },
    Number {
        integer: bool,
        state: Num,
        len: usize,
    },
    Literal {
        word: &'static [u8],
        pos: usize,
    },
}

/// Where a tool-call text is; cheap to clone, so candidates are tried on a copy.
#[derive(Debug, Clone)]
pub struct ToolCallMatcher {
    tools: Arc<Vec<(String, ArgSchema)>>,
    tool: Option<usize>,
    stack: Vec<Frame>,
    ws: u8,
    complete: bool,
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\t' | b'\r')
}

impl ToolCallMatcher {
    /// Whether the whole call has been read (the top object is closed).
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// Whether appending `bytes` keeps the text a valid prefix (without changing `self`).
    pub fn accepts(&self, bytes: &[u8]) -> bool {
        let mut m = self.clone();
        m.feed(bytes)
    }

    /// Append `bytes`; false (and the matcher left in an unspecified state) if they break the
    /// grammar.
    pub fn feed(&mut self, bytes: &[u8]) -> bool {
        bytes.iter().all(|&b| self.byte(b))
    }

    fn keys_left(&self, f: &ObjFrame) -> Vec<String> {
        if f.top {
            if !f.seen.iter().any(|k| k == "name") {
                vec!["name".into()]
            } else if !f.seen.iter().any(|k| k == "arguments") {
                vec!["arguments".into()]
            } else {
                Vec::new()
            }
        } else {
            let Some(t) = self.tool.and_then(|t| self.tools.get(t)) else {
                return Vec::new();
            };
            t.1.properties
                .iter()
                .map(|(n, _)| n.clone())
                .filter(|n| !f.seen.contains(n))
                .collect()
        }
    }

    fn can_close(&self, f: &ObjFrame) -> bool {
        if f.top {
            f.seen.len() == 2
        } else {
            match self.tool.and_then(|t| self.tools.get(t)) {
                Some(t) => t.1.required.iter().all(|r| f.seen.contains(r)),
                None => false,
            }
        }
    }

    fn value_type(&self, f: &ObjFrame) -> Option<ArgType> {
        let key = f.seen.last()?;
        if f.top {
            if key == "name" {
                Some(ArgType::String(Some(
                    self.tools.iter().map(|t| t.0.clone()).collect(),
                )))
            } else {
                None // arguments: an object
            }
        } else {
            let t = self.tools.get(self.tool?)?;
            t.1.properties
                .iter()
                .find(|(n, _)| n == key)
                .map(|(_, ty)| ty.clone())
        }
    }

    /// A child value finished: the enclosing object moves on.
    fn child_done(&mut self, value: Option<&[u8]>) {
        let top_name = match self.stack.last() {
            Some(Frame::Object(f)) => f.top && f.seen.last().is_some_and(|k| k == "name"),
            _ => false,
        };
        if top_name {
            if let Some(v) = value {
                self.tool = self.tools.iter().position(|t| t.0.as_bytes() == v);
            }
        }
        match self.stack.last_mut() {
            Some(Frame::Object(f)) => f.state = ObjState::CommaOrClose,
            _ => self.complete = true,
        }
    }

    fn ws_ok(&mut self, b: u8) -> bool {
        if is_ws(b) && self.ws < MAX_WS {
            self.ws += 1;
            true
        } else {
            false
        }
    }

    fn byte(&mut self, b: u8) -> bool {
        if self.complete {
            return false;
        }
        let Some(frame) = self.stack.pop() else {
            return false;
        };
        match frame {
            Frame::Literal { word, pos } => {
                if word.get(pos) != Some(&b) {
                    return false;
                }
                if pos + 1 == word.len() {
                    self.child_done(None);
                } else {
                    self.stack.push(Frame::Literal { word, pos: pos + 1 });
                }
                true
            }
            Frame::Number {
                integer,
                state,
                len,
            } => {
                let next = match (state, b) {
                    (Num::Sign, b'0') => Some(Num::Zero),
                    (Num::Sign, b'1'..=b'9') => Some(Num::Int),
                    (Num::Int, b'0'..=b'9') => Some(Num::Int),
                    (Num::Zero | Num::Int, b'.') if !integer => Some(Num::Dot),
                    (Num::Zero | Num::Int | Num::Frac, b'e' | b'E') if !integer => Some(Num::Exp),
                    (Num::Dot | Num::Frac, b'0'..=b'9') => Some(Num::Frac),
                    (Num::Exp, b'+' | b'-') => Some(Num::ExpSign),
                    (Num::Exp | Num::ExpSign | Num::ExpInt, b'0'..=b'9') => Some(Num::ExpInt),
                    _ => None,
                };
                match next {
                    Some(state) if len < MAX_NUMBER => {
                        self.stack.push(Frame::Number {
                            integer,
                            state,
                            len: len + 1,
                        });
                        true
                    }
                    Some(_) => false,
                    None => {
                        if matches!(state, Num::Zero | Num::Int | Num::Frac | Num::ExpInt) {
                            self.child_done(None);
                            self.byte(b)
                        } else {
                            false
                        }
                    }
                }
            }
            Frame::Str {
                choices,
                mut buf,
                escape,
            } => {
                if escape {
                    if choices.is_some() || !b"\"\\/bfnrt".contains(&b) {
                        return false;
                    }
                    buf.push(b'\\');
                    buf.push(b);
                    self.stack.push(Frame::Str {
                        choices,
                        buf,
                        escape: false,
                    });
                    return true;
                }
                match b {
                    b'"' => {
                        if let Some(c) = &choices {
                            if !c.iter().any(|v| v.as_bytes() == buf.as_slice()) {
                                return false;
                            }
                        }
                        self.child_done(Some(&buf));
                        true
                    }
                    b'\\' => {
                        self.stack.push(Frame::Str {
                            choices,
                            buf,
                            escape: true,
                        });
                        true
                    }
                    0..=0x1f => false,
                    _ => {
                        buf.push(b);
                        if buf.len() > MAX_STRING {
                            return false;
                        }
                        if let Some(c) = &choices {
                            if !c.iter().any(|v| v.as_bytes().starts_with(&buf)) {
                                return false;
                            }
                        }
                        self.stack.push(Frame::Str {
                            choices,
                            buf,
                            escape: false,
                        });
                        true
                    }
                }
            }
            Frame::Object(mut f) => self.object_byte(&mut f, b),
        }
    }

    /// One byte for an object frame (already popped); pushes it back (and any child).
    fn object_byte(&mut self, f: &mut ObjFrame, b: u8) -> bool {
        let push_self = |m: &mut Self, f: &ObjFrame| m.stack.push(Frame::Object(f.clone()));
        match f.state {
            ObjState::Open => {
                if b == b'{' {
                    self.ws = 0;
                    f.state = ObjState::KeyOrClose;
                    push_self(self, f);
                    true
                } else {
                    let ok = self.ws_ok(b);
                    push_self(self, f);
                    ok
                }
            }
            ObjState::KeyOrClose | ObjState::Key | ObjState::CommaOrClose => {
                let close_ok = f.state != ObjState::Key && self.can_close(f);
                if b == b'}' && close_ok {
                    self.ws = 0;
                    self.child_done(None);
                    return true;
                }
                if b == b'"' && f.state != ObjState::CommaOrClose && !self.keys_left(f).is_empty() {
                    self.ws = 0;
                    f.state = ObjState::InKey;
                    f.key.clear();
                    push_self(self, f);
                    return true;
                }
                if b == b',' && f.state == ObjState::CommaOrClose && !self.keys_left(f).is_empty() {
                    self.ws = 0;
                    f.state = ObjState::Key;
                    push_self(self, f);
                    return true;
                }
                let ok = self.ws_ok(b);
                push_self(self, f);
                ok
            }
            ObjState::InKey => {
                let left = self.keys_left(f);
                if b == b'"' {
                    let key = String::from_utf8_lossy(&f.key).into_owned();
                    if !left.contains(&key) {
                        return false;
                    }
                    f.seen.push(key);
                    f.state = ObjState::Colon;
                    push_self(self, f);
                    return true;
                }
                f.key.push(b);
                let ok = left.iter().any(|k| k.as_bytes().starts_with(&f.key));
                push_self(self, f);
                ok
            }
            ObjState::Colon => {
                if b == b':' {
                    self.ws = 0;
                    f.state = ObjState::Value;
                    push_self(self, f);
                    return true;
                }
                let ok = self.ws_ok(b);
                push_self(self, f);
                ok
            }
            ObjState::Value => {
                let ty = self.value_type(f);
                push_self(self, f);
                match ty {
                    None => {
                        // The top object's `arguments`: the chosen tool's object.
                        if self.tool.is_none() {
                            return false;
                        }
                        if b == b'{' {
                            self.ws = 0;
                            self.stack.push(Frame::Object(ObjFrame {
                                top: false,
                                seen: Vec::new(),
                                state: ObjState::KeyOrClose,
                                key: Vec::new(),
                            }));
                            true
                        } else {
                            self.ws_ok(b)
                        }
                    }
                    Some(ArgType::String(choices)) => {
                        if b == b'"' {
                            self.ws = 0;
                            self.stack.push(Frame::Str {
                                choices,
                                buf: Vec::new(),
                                escape: false,
                            });
                            true
                        } else {
                            self.ws_ok(b)
                        }
                    }
                    Some(ty @ (ArgType::Integer | ArgType::Number)) => {
                        let state = match b {
                            b'-' => Num::Sign,
                            b'0' => Num::Zero,
                            b'1'..=b'9' => Num::Int,
                            _ => return self.ws_ok(b),
                        };
                        self.ws = 0;
                        self.stack.push(Frame::Number {
                            integer: ty == ArgType::Integer,
                            state,
                            len: 1,
                        });
                        true
                    }
                    Some(ArgType::Boolean) => {
                        let word: &'static [u8] = match b {
                            b't' => b"true",
                            b'f' => b"false",
                            _ => return self.ws_ok(b),
                        };
                        self.ws = 0;
                        self.stack.push(Frame::Literal { word, pos: 1 });
                        true
                    }
                }
            }
        }
    }
}

/// An example argument value for a property type (used in prompt examples).
fn example_value(ty: &ArgType, name: &str) -> Value {
    match ty {
        ArgType::String(Some(v)) => Value::String(v[0].clone()),
        ArgType::String(None) => Value::String(name.replace('_', " ")),
        ArgType::Integer => Value::from(5),
        ArgType::Number => Value::from(2.5),
        ArgType::Boolean => Value::Bool(true),
    }
}

/// The system-prompt section that lists `tools` (name, description, JSON schema) with a few
/// examples of the exact call format. Usable by any backend.
pub fn tools_prompt(tools: &[ToolSpec]) -> String {
    let mut s = String::from(
        "You can call tools. To call one, reply with only a JSON object of the form \
         {\"name\": <tool name>, \"arguments\": {<argument>: <value>, ...}} and nothing else.\n\nTools:\n",
    );
    for t in tools {
        s.push_str(&format!(
            "- {}: {}\n  arguments schema: {}\n",
            t.name, t.description, t.parameters
        ));
    }
    s.push_str("\nExamples:\n");
    for t in tools.iter().take(3) {
        let Ok(schema) = ArgSchema::parse(&t.parameters) else {
            continue;
        };
        let args: Vec<String> = schema
            .properties
            .iter()
            .map(|(n, ty)| format!("{}: {}", Value::from(n.as_str()), example_value(ty, n)))
            .collect();
        s.push_str(&format!(
            "Request: {}\nReply: {{\"name\": {}, \"arguments\": {{{}}}}}\n",
            t.description,
            Value::from(t.name.as_str()),
            args.join(", ")
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tools() -> Vec<ToolSpec> {
        vec![
            ToolSpec {
                name: "reminder_set".into(),
                description: "Set a reminder".into(),
                parameters: json!({"type":"object","properties":{
                    "what":{"type":"string"},"minutes":{"type":"integer"}},
                    "required":["what","minutes"]}),
            },
            ToolSpec {
                name: "light".into(),
                description: "Switch a light".into(),
                parameters: json!({"type":"object","properties":{
                    "room":{"type":"string","enum":["kitchen","hall"]},
                    "on":{"type":"boolean"},"level":{"type":"number"}},
                    "required":["room"]}),
            },
        ]
    }

    fn accepts_whole(text: &str) -> bool {
        let mut m = ToolGrammar::new(&tools()).unwrap().matcher();
        m.feed(text.as_bytes()) && m.is_complete()
    }

    #[test]
    fn automaton_accepts_valid_calls() {
        for ok in [
            r#"{"name": "reminder_set", "arguments": {"what": "call mom", "minutes": 10}}"#,
            r#"{"name":"reminder_set","arguments":{"minutes":0,"what":"x \"y\""}}"#,
            r#"{"name": "light", "arguments": {"room": "hall"}}"#,
            r#"{"name": "light", "arguments": {"room": "kitchen", "on": false, "level": -1.5e3}}"#,
            "\n{\"name\": \"light\",\n \"arguments\": {\"room\": \"hall\", \"on\": true}}",
        ] {
            assert!(accepts_whole(ok), "should accept {ok}");
            assert!(
                parse_tool_call(&tools(), ok).is_ok(),
                "should validate {ok}"
            );
        }
    }

    #[test]
    fn automaton_rejects_invalid_calls() {
        for bad in [
            r#"{"name": "alarm", "arguments": {}}"#,
            r#"{"arguments": {}, "name": "light"}"#,
            r#"{"name": "reminder_set", "arguments": {"what": "x"}}"#,
            r#"{"name": "reminder_set", "arguments": {"what": "x", "minutes": 1.5}}"#,
            r#"{"name": "reminder_set", "arguments": {"what": 3, "minutes": 1}}"#,
            r#"{"name": "light", "arguments": {"room": "garage"}}"#,
            r#"{"name": "light", "arguments": {"room": "hall", "room": "hall"}}"#,
            r#"{"name": "light", "arguments": {"room": "hall", "colour": "red"}}"#,
            r#"{"name": "light", "arguments": {"room": "hall", "on": yes}}"#,
            r#"{"name": "light", "arguments": {"room": "hall",}}"#,
            r#"{"name":     "light", "arguments": {"room": "hall"}}"#,
            r#"{"name": "light", "arguments": {"room": "hall", "level": 01}}"#,
        ] {
            assert!(!accepts_whole(bad), "should reject {bad}");
        }
    }

    #[test]
    fn nothing_is_accepted_after_the_call_is_complete() {
        let mut m = ToolGrammar::new(&tools()).unwrap().matcher();
        assert!(m.feed(br#"{"name": "light", "arguments": {"room": "hall"}}"#));
        assert!(m.is_complete());
        assert!(!m.accepts(b" "));
        assert!(!m.accepts(b"}"));
    }

    #[test]
    fn prefixes_are_accepted_and_matchers_are_independent_copies() {
        let m = ToolGrammar::new(&tools()).unwrap().matcher();
        assert!(m.accepts(b"{\"na"));
        assert!(m.accepts(b"{\"name\": \"rem"));
        assert!(!m.accepts(b"{\"name\": \"x"));
        assert!(!m.accepts(b"hello"));
        assert!(!m.is_complete());
    }

    #[test]
    fn validator_checks_required_types_and_enums() {
        let schema = &tools()[1].parameters;
        assert!(validate_arguments(schema, &json!({"room": "hall", "on": true})).is_ok());
        let missing = validate_arguments(schema, &json!({"on": true})).unwrap_err();
        assert!(missing.contains("`room` is missing"), "{missing}");
        assert!(validate_arguments(schema, &json!({"room": "attic"})).is_err());
        assert!(validate_arguments(schema, &json!({"room": "hall", "on": 1})).is_err());
        assert!(validate_arguments(schema, &json!({"room": "hall", "level": "high"})).is_err());
        assert!(validate_arguments(schema, &json!(["hall"])).is_err());
        let int = &tools()[0].parameters;
        assert!(validate_arguments(int, &json!({"what": "a", "minutes": 3})).is_ok());
        assert!(validate_arguments(int, &json!({"what": "a", "minutes": 3.5})).is_err());
    }

    #[test]
    fn unsupported_schemas_are_named() {
        let err = ArgSchema::parse(&json!({"type":"object","properties":{"xs":{"type":"array"}}}))
            .unwrap_err();
        assert!(err.contains("`xs`") && err.contains("array"), "{err}");
        let err = ArgSchema::parse(&json!({"type":"object","required":["a"]})).unwrap_err();
        assert!(err.contains("`a`"), "{err}");
    }

    #[test]
    fn tools_prompt_lists_every_tool_with_an_example() {
        let p = tools_prompt(&tools());
        assert!(p.contains("reminder_set: Set a reminder"));
        assert!(
            p.contains(
                r#"{"name": "light", "arguments": {"level": 2.5, "on": true, "room": "kitchen"}}"#
            ),
            "{p}"
        );
    }
}
