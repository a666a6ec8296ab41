//! The methods the conformance cases may call, for the Rust runner:
//! capnp-rust has no reflection for interfaces, so each is listed here once
//! with its interface, ordinal and the schemas of its params and results
//! (a method added to the schema needs one line in [`methods!`]).

#![allow(unreachable_pub)]

use capnp::introspect::{Introspect, Type, TypeVariant};
use capnp::schema::StructSchema;
use capnp::traits::HasTypeId;

use capactor::schema::actor_capnp::{actor, gate};
use capactor::schema::tensor_capnp::{tensor, tensor_worker};

/// One method: where it is and the schemas of its params and results.
pub struct Method {
    pub iface: u64,
    pub ordinal: u16,
    pub params: StructSchema,
    pub results: StructSchema,
}

fn struct_schema(t: Type) -> StructSchema {
    match t.which() {
        TypeVariant::Struct(raw) => StructSchema::new(raw),
        _ => panic!("not a struct type"),
    }
}

macro_rules! methods {
    ($($name:literal => $iface:ident, $ord:expr, $p:ident, $r:ident;)*) => {
        pub fn lookup(name: &str) -> Option<Method> {
            match name {
                $($name => Some(Method {
                    iface: $iface::Client::TYPE_ID,
                    ordinal: $ord,
                    params: struct_schema(<$iface::$p::Owned as Introspect>::introspect()),
                    results: struct_schema(<$iface::$r::Owned as Introspect>::introspect()),
                }),)*
                _ => None,
            }
        }
    };
}

methods! {
    "Gate.open" => gate, 0, open_params, open_results;
    "Actor.ping" => actor, 0, ping_params, ping_results;
    "Actor.info" => actor, 1, info_params, info_results;
    "TensorWorker.fromData" => tensor_worker, 0, from_data_params, from_data_results;
    "TensorWorker.full" => tensor_worker, 1, full_params, full_results;
    "TensorWorker.arange" => tensor_worker, 2, arange_params, arange_results;
    "TensorWorker.random" => tensor_worker, 3, random_params, random_results;
    "TensorWorker.concat" => tensor_worker, 4, concat_params, concat_results;
    "TensorWorker.fetch" => tensor_worker, 5, fetch_params, fetch_results;
    "TensorWorker.memory" => tensor_worker, 6, memory_params, memory_results;
    "Tensor.meta" => tensor, 0, meta_params, meta_results;
    "Tensor.read" => tensor, 1, read_params, read_results;
    "Tensor.binary" => tensor, 2, binary_params, binary_results;
    "Tensor.binaryScalar" => tensor, 3, binary_scalar_params, binary_scalar_results;
    "Tensor.unary" => tensor, 4, unary_params, unary_results;
    "Tensor.compare" => tensor, 5, compare_params, compare_results;
    "Tensor.compareScalar" => tensor, 6, compare_scalar_params, compare_scalar_results;
    "Tensor.matmul" => tensor, 7, matmul_params, matmul_results;
    "Tensor.reduce" => tensor, 8, reduce_params, reduce_results;
    "Tensor.reshape" => tensor, 9, reshape_params, reshape_results;
    "Tensor.transpose" => tensor, 10, transpose_params, transpose_results;
    "Tensor.slice" => tensor, 11, slice_params, slice_results;
    "Tensor.cast" => tensor, 12, cast_params, cast_results;
    "Tensor.select" => tensor, 13, select_params, select_results;
    "Tensor.take" => tensor, 14, take_params, take_results;
    "Tensor.softmax" => tensor, 17, softmax_params, softmax_results;
    "Tensor.cumulative" => tensor, 18, cumulative_params, cumulative_results;
    "Tensor.clip" => tensor, 19, clip_params, clip_results;
    "Tensor.takeAlongAxis" => tensor, 20, take_along_axis_params, take_along_axis_results;
    "Tensor.indexSelect" => tensor, 21, index_select_params, index_select_results;
    "Tensor.maskSelect" => tensor, 22, mask_select_params, mask_select_results;
    "Tensor.scatter" => tensor, 23, scatter_params, scatter_results;
    "Tensor.assign" => tensor, 24, assign_params, assign_results;
    "Tensor.assignMask" => tensor, 25, assign_mask_params, assign_mask_results;
    // Ordinals looked up by name in the compiled-in schema (the lead
    // renumbers methods appended in parallel at merge).
    "Tensor.tensordot" => tensor, ordinal::<tensor::Client>("tensordot"), tensordot_params, tensordot_results;
    "Tensor.split" => tensor, ordinal::<tensor::Client>("split"), split_params, split_results;
    "Tensor.squeeze" => tensor, ordinal::<tensor::Client>("squeeze"), squeeze_params, squeeze_results;
    "Tensor.expandDims" => tensor, ordinal::<tensor::Client>("expandDims"), expand_dims_params, expand_dims_results;
    "Tensor.broadcastTo" => tensor, ordinal::<tensor::Client>("broadcastTo"), broadcast_to_params, broadcast_to_results;
    "Tensor.tile" => tensor, ordinal::<tensor::Client>("tile"), tile_params, tile_results;
    "Tensor.flip" => tensor, ordinal::<tensor::Client>("flip"), flip_params, flip_results;
    "Tensor.sort" => tensor, ordinal::<tensor::Client>("sort"), sort_params, sort_results;
    "Tensor.argsort" => tensor, ordinal::<tensor::Client>("argsort"), argsort_params, argsort_results;
    "Tensor.topk" => tensor, ordinal::<tensor::Client>("topk"), topk_params, topk_results;
    "TensorWorker.einsum" => tensor_worker, ordinal::<tensor_worker::Client>("einsum"), einsum_params, einsum_results;
    "TensorWorker.stack" => tensor_worker, ordinal::<tensor_worker::Client>("stack"), stack_params, stack_results;
    "TensorWorker.eye" => tensor_worker, ordinal::<tensor_worker::Client>("eye"), eye_params, eye_results;
    "TensorWorker.linspace" => tensor_worker, ordinal::<tensor_worker::Client>("linspace"), linspace_params, linspace_results;
    "TensorWorker.randint" => tensor_worker, ordinal::<tensor_worker::Client>("randint"), randint_params, randint_results;
    "TensorWorker.permutation" => tensor_worker, ordinal::<tensor_worker::Client>("permutation"), permutation_params, permutation_results;
}

/// The ordinal of method `name` of interface `I`, from the schema nodes
/// compiled into capactor.
fn ordinal<I: HasTypeId>(name: &str) -> u16 {
    capactor::catalog::Catalog::builtin()
        .interface(I::TYPE_ID)
        .and_then(|i| i.methods.iter().find(|m| m.name == name))
        .map(|m| m.ordinal)
        .unwrap_or_else(|| panic!("the schema has no method {name}"))
}

pub fn type_id(name: &str) -> Option<u64> {
    Some(match name {
        "Gate" => gate::Client::TYPE_ID,
        "Actor" => actor::Client::TYPE_ID,
        "TensorWorker" => tensor_worker::Client::TYPE_ID,
        "Tensor" => tensor::Client::TYPE_ID,
        _ => return None,
    })
}
