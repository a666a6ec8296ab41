//! Attribute macros of capactor, re-exported by it: use them as
//! `#[capactor::test]`, never from this crate directly.

use proc_macro::TokenStream;
use quote::quote;
use syn::{parse_macro_input, ItemFn};

/// Marks an `async fn` as a test that runs inside `capactor::block_on`:
/// on the test's thread, in a tokio `LocalSet`, where capnp-rpc clients
/// live. What `#[tokio::test]` is to tokio, as `#[actix_rt::test]` is to
/// actix.
///
/// The body may return `()` or a `Result`, as any test may.
///
/// # Examples
///
/// ```text
/// #[capactor::test]
/// async fn a_virtual_worker_answers() {
///     let rt = capactor::Runtime::builder().vats(1).build().unwrap();
///     let w = Worker::spawn_virtual(&rt, || TensorWorker::new("w", Quota::new(1 << 20))).unwrap();
///     assert_eq!(w.ones(DType::F32, &[2]).sum().item().await.unwrap(), 2.0);
/// }
/// ```
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    if !args.is_empty() {
        let args = proc_macro2::TokenStream::from(args);
        return syn::Error::new_spanned(args, "#[capactor::test] takes no arguments")
            .to_compile_error()
            .into();
    }
    let f = parse_macro_input!(item as ItemFn);
    if f.sig.asyncness.is_none() {
        return syn::Error::new_spanned(f.sig.fn_token, "#[capactor::test] needs an `async fn`")
            .to_compile_error()
            .into();
    }
    if !f.sig.inputs.is_empty() {
        return syn::Error::new_spanned(&f.sig.inputs, "a #[capactor::test] takes no arguments")
            .to_compile_error()
            .into();
    }
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = f;
    let name = &sig.ident;
    let output = &sig.output;
    quote! {
        #[::core::prelude::v1::test]
        #(#attrs)*
        #vis fn #name() #output {
            ::capactor::block_on(async move #block)
                .expect("#[capactor::test] runs its body with capactor::block_on")
        }
    }
    .into()
}
