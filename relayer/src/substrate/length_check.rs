//! A guard in front of `scale_value`'s decoder for bytes a chain sends. scale-value 0.18 reserves
//! room for a sequence's items from the count the bytes claim (`Vec::with_capacity`) before it
//! reads any item, so an extrinsic claiming 2^50 items made the process abort on a failed
//! allocation — no error, no unwinding (found by `relayer/tests/fuzz_substrate.rs`).
//! [`check_lengths`] first walks the same bytes as the same type, keeping nothing, and refuses a
//! sequence that claims more items than there are bytes left: an item of a call takes at least
//! one byte (zero-sized items, `Vec<()>`, do not occur in calls), so a real sequence never does.
//! Events need no such walk: substrate-api-client skips every event's fields without keeping
//! them before it decodes any, which fails on the same lie.

use std::marker::PhantomData;

use scale_decode::visitor::types::{Array, Composite, Sequence, Tuple, Variant};
use scale_decode::visitor::{decode_with_visitor, DecodeError, TypeIdFor, Unexpected};
use scale_decode::{TypeResolver, Visitor};

/// Walks a value without keeping it, refusing sequences longer than the bytes left.
struct LengthCheck<R>(PhantomData<R>);

impl<R> LengthCheck<R> {
    fn new() -> Self {
        LengthCheck(PhantomData)
    }
}

impl<R: TypeResolver> Visitor for LengthCheck<R> {
    type Value<'scale, 'resolver> = ();
    type Error = DecodeError;
    type TypeResolver = R;

    // Primitives, strings and bit sequences: nothing to keep (the decoder reads past them).
    fn visit_unexpected<'scale, 'resolver>(
        self,
        _unexpected: Unexpected,
    ) -> Result<Self::Value<'scale, 'resolver>, Self::Error> {
        Ok(())
    }

    fn visit_sequence<'scale, 'resolver>(
        self,
        value: &mut Sequence<'scale, 'resolver, Self::TypeResolver>,
        _type_id: TypeIdFor<Self>,
    ) -> Result<Self::Value<'scale, 'resolver>, Self::Error> {
        if value.remaining() > value.bytes_from_undecoded().len() {
            return Err(DecodeError::NotEnoughInput);
        }
        while let Some(item) = value.decode_item(LengthCheck::new()) {
            item?;
        }
        Ok(())
    }

    fn visit_composite<'scale, 'resolver>(
        self,
        value: &mut Composite<'scale, 'resolver, Self::TypeResolver>,
        _type_id: TypeIdFor<Self>,
    ) -> Result<Self::Value<'scale, 'resolver>, Self::Error> {
        while let Some(item) = value.decode_item(LengthCheck::new()) {
            item?;
        }
        Ok(())
    }

    fn visit_tuple<'scale, 'resolver>(
        self,
        value: &mut Tuple<'scale, 'resolver, Self::TypeResolver>,
        _type_id: TypeIdFor<Self>,
    ) -> Result<Self::Value<'scale, 'resolver>, Self::Error> {
        while let Some(item) = value.decode_item(LengthCheck::new()) {
            item?;
        }
        Ok(())
    }

    fn visit_array<'scale, 'resolver>(
        self,
        value: &mut Array<'scale, 'resolver, Self::TypeResolver>,
        _type_id: TypeIdFor<Self>,
    ) -> Result<Self::Value<'scale, 'resolver>, Self::Error> {
        while let Some(item) = value.decode_item(LengthCheck::new()) {
            item?;
        }
        Ok(())
    }

    fn visit_variant<'scale, 'resolver>(
        self,
        value: &mut Variant<'scale, 'resolver, Self::TypeResolver>,
        _type_id: TypeIdFor<Self>,
    ) -> Result<Self::Value<'scale, 'resolver>, Self::Error> {
        let fields = value.fields();
        while let Some(item) = fields.decode_item(LengthCheck::new()) {
            item?;
        }
        Ok(())
    }
}

/// Checks that `bytes`, read as type `ty`, claim no sequence longer than the bytes left.
pub(crate) fn check_lengths<R: TypeResolver>(
    bytes: &[u8],
    ty: R::TypeId,
    types: &R,
) -> Result<(), DecodeError> {
    let mut cur = bytes;
    decode_with_visitor(&mut cur, ty, types, LengthCheck::new())
}
