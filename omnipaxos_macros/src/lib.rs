//! `#[derive(Entry)]` for [OmniPaxos](https://crates.io/crates/omnipaxos) log entry types.
//!
//! ```
//! use omnipaxos::macros::Entry;
//!
//! #[derive(Clone, Debug, Entry)]
//! pub struct KeyValue {
//!     pub key: String,
//!     pub value: u64,
//! }
//! ```
//!
//! With `#[snapshot(MySnapshot)]` the entry type's `Snapshot` is `MySnapshot` (a type that
//! implements `omnipaxos::storage::Snapshot<Self>`); without it, `omnipaxos::storage::NoSnapshot`.
//! Structs and enums, with or without generics, are supported.

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::quote;
use syn::{parse_macro_input, spanned::Spanned, DeriveInput, Type};

/// Implements `omnipaxos::storage::Entry` for a struct or enum.
///
/// `#[snapshot(Type)]` names the snapshot type; the default is `NoSnapshot`. A malformed or
/// repeated attribute is a compile error that says what is expected.
#[proc_macro_derive(Entry, attributes(snapshot))]
pub fn entry_derive(input: TokenStream) -> TokenStream {
    let ast = parse_macro_input!(input as DeriveInput);
    match expand(&ast) {
        Ok(ts) => ts.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn expand(ast: &DeriveInput) -> syn::Result<proc_macro2::TokenStream> {
    if let syn::Data::Union(u) = &ast.data {
        return Err(syn::Error::new(
            u.union_token.span(),
            "#[derive(Entry)] supports structs and enums, not unions",
        ));
    }
    let snapshot = snapshot_type(ast)?;
    let name = &ast.ident;
    let (impl_generics, ty_generics, where_clause) = ast.generics.split_for_impl();
    let snapshot = match snapshot {
        Some(ty) => quote!(#ty),
        None => quote!(::omnipaxos::storage::NoSnapshot),
    };
    Ok(quote! {
        impl #impl_generics ::omnipaxos::storage::Entry for #name #ty_generics #where_clause {
            type Snapshot = #snapshot;
        }
    })
}

const EXPECTED: &str =
    "expected `#[snapshot(Type)]` naming the snapshot type, e.g. `#[snapshot(KVSnapshot)]`";

fn snapshot_type(ast: &DeriveInput) -> syn::Result<Option<Type>> {
    let mut found: Option<Type> = None;
    for attr in ast.attrs.iter().filter(|a| a.path().is_ident("snapshot")) {
        let list = match &attr.meta {
            syn::Meta::List(list) => list,
            other => return Err(syn::Error::new(other.span(), EXPECTED)),
        };
        if list.tokens.is_empty() {
            return Err(syn::Error::new(list.span(), EXPECTED));
        }
        let ty: Type = syn::parse2(list.tokens.clone())
            .map_err(|e| syn::Error::new(e.span(), format!("{EXPECTED}: {e}")))?;
        if found.is_some() {
            return Err(syn::Error::new(
                attr.span(),
                "only one `#[snapshot(Type)]` attribute is allowed",
            ));
        }
        found = Some(ty);
    }
    let _ = Span::call_site();
    Ok(found)
}
