//! A guard in front of `scale_value`'s decoder for bytes a chain sends. Two kinds of bytes made
//! the process abort — no error, no unwinding — and were found by
//! `relayer/tests/fuzz_substrate.rs` and review:
//! - scale-value 0.18 reserves room for a sequence's items from the count the bytes claim
//!   (`Vec::with_capacity`) before it reads any item, so an extrinsic claiming 2^30 items failed
//!   an allocation;
//! - scale-decode and scale-value recurse once per level of nesting, and skip the rest of a value
//!   after an error recursively too, so a `Utility.batch` inside a batch inside a batch… (three
//!   bytes a level) overflowed the stack.
//!
//! [`check_shape`] walks the bytes as their type first, iteratively (its own stack on the heap,
//! nothing kept), and refuses a sequence that claims more items than there are bytes left (an
//! item of a call takes at least one byte; zero-sized items, `Vec<()>`, do not occur in calls)
//! and values nested deeper than [`DEPTH_MAX`] type levels. Bytes that pass are decoded as
//! before, with every recursion bounded.
//! Events need no such walk for the length lie: substrate-api-client skips every event's fields
//! before it decodes any, which fails on it.

use parity_scale_codec::{Compact, Decode};
use scale_info::{PortableRegistry, TypeDef, TypeDefPrimitive};

/// Deepest nesting of type levels accepted in one value. A `Utility.batch` level is three
/// (the call enum, the pallet's call enum, the `calls` vector); a remittance's
/// `batch_all([remark_with_event])` is about seven; sixty-four leaves room for real calls and
/// keeps the decoders' recursion well within a worker thread's stack.
pub const DEPTH_MAX: u32 = 64;

/// One pending piece of the walk: `repeat` values of type `id` at nesting `depth`.
struct Pending {
    id: u32,
    depth: u32,
    repeat: u32,
}

/// Checks that `bytes`, read as type `ty`, claim no sequence longer than the bytes left and
/// nest no deeper than [`DEPTH_MAX`]; the reason otherwise. Bytes left over after the value
/// are the caller's to judge.
pub(crate) fn check_shape(bytes: &[u8], ty: u32, types: &PortableRegistry) -> Result<(), String> {
    let mut cur = bytes;
    let mut work = vec![Pending {
        id: ty,
        depth: 0,
        repeat: 1,
    }];
    while let Some(p) = work.pop() {
        if p.repeat > 1 {
            work.push(Pending {
                repeat: p.repeat - 1,
                ..p
            });
        }
        if p.depth > DEPTH_MAX {
            return Err(format!("nested deeper than {DEPTH_MAX} levels"));
        }
        let inner = |id: u32, repeat: u32| Pending {
            id,
            depth: p.depth + 1,
            repeat,
        };
        let t = types
            .resolve(p.id)
            .ok_or_else(|| format!("type {} is not in the metadata", p.id))?;
        match &t.type_def {
            TypeDef::Composite(c) => {
                work.extend(c.fields.iter().rev().map(|f| inner(f.ty.id, 1)));
            }
            TypeDef::Tuple(t) => work.extend(t.fields.iter().rev().map(|f| inner(f.id, 1))),
            TypeDef::Variant(v) => {
                let index = take(&mut cur, 1)?[0];
                let variant = v
                    .variants
                    .iter()
                    .find(|x| x.index == index)
                    .ok_or_else(|| format!("no variant with index {index}"))?;
                work.extend(variant.fields.iter().rev().map(|f| inner(f.ty.id, 1)));
            }
            TypeDef::Sequence(s) => {
                let n = count(&mut cur)?;
                if n as usize > cur.len() {
                    return Err(format!(
                        "a sequence claims {n} items with {} bytes left",
                        cur.len()
                    ));
                }
                if n > 0 {
                    work.push(inner(s.type_param.id, n));
                }
            }
            TypeDef::Array(a) => {
                if a.len > 0 {
                    work.push(inner(a.type_param.id, a.len));
                }
            }
            TypeDef::Primitive(prim) => {
                let size = match prim {
                    TypeDefPrimitive::Str => count(&mut cur)? as usize,
                    other => primitive_size(other),
                };
                take(&mut cur, size)?;
            }
            TypeDef::Compact(_) => skip_compact(&mut cur)?,
            TypeDef::BitSequence(b) => {
                let bits = count(&mut cur)? as usize;
                let store = match types.resolve(b.bit_store_type.id).map(|t| &t.type_def) {
                    Some(TypeDef::Primitive(p)) => primitive_size(p).max(1),
                    _ => return Err("a bit sequence's store is not a number".into()),
                };
                take(&mut cur, bits.div_ceil(store * 8) * store)?;
            }
        }
    }
    Ok(())
}

/// Bytes a fixed-size primitive takes (`Str` is sized by its prefix instead).
fn primitive_size(p: &TypeDefPrimitive) -> usize {
    use TypeDefPrimitive::*;
    match p {
        Bool | U8 | I8 => 1,
        U16 | I16 => 2,
        Char | U32 | I32 => 4,
        U64 | I64 => 8,
        U128 | I128 => 16,
        U256 | I256 => 32,
        Str => 0,
    }
}

fn take<'a>(cur: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
    if cur.len() < n {
        return Err(format!("{n} bytes needed, {} left", cur.len()));
    }
    let (head, rest) = cur.split_at(n);
    *cur = rest;
    Ok(head)
}

/// A SCALE compact length (at most `u32`).
fn count(cur: &mut &[u8]) -> Result<u32, String> {
    Compact::<u32>::decode(cur)
        .map(|c| c.0)
        .map_err(|e| format!("a length: {e}"))
}

/// Skips one SCALE compact integer of any width.
fn skip_compact(cur: &mut &[u8]) -> Result<(), String> {
    let first = *cur.first().ok_or("a compact number: no bytes left")?;
    let size = match first & 0b11 {
        0b00 => 1,
        0b01 => 2,
        0b10 => 4,
        _ => usize::from(first >> 2) + 5,
    };
    take(cur, size).map(|_| ())
}
