//! English grammar of the fast path.

use super::{Intent, ParseContext, SlotKind, SlotValue};

/// Parse an English utterance.
pub(super) fn parse(_text: &str, _ctx: &ParseContext) -> Option<Intent> {
    None
}

/// Parse an English slot answer.
pub(super) fn parse_slot(_text: &str, _kind: SlotKind, _ctx: &ParseContext) -> Option<SlotValue> {
    None
}
