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
//! Structs and enums, with or without generics, are supported. A generic type is an entry
//! whenever it is `Clone + Debug` (and the snapshot type's own bounds hold), so
//! `#[derive(Clone, Debug, Entry)] struct Tagged<T> { .. }` needs no extra bounds on `T`.

use proc_macro::TokenStream;
use quote::{quote, ToTokens};
use syn::{
    parse::Parser, parse_macro_input, parse_quote, punctuated::Punctuated, spanned::Spanned,
    Attribute, DeriveInput, LitStr, MacroDelimiter, Token, Type,
};

/// Implements `omnipaxos::storage::Entry` for a struct or enum.
///
/// `#[snapshot(Type)]` on the type names the snapshot type; the default is `NoSnapshot`. A
/// malformed, repeated or misplaced attribute is a compile error that says what is expected.
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
    reject_inner_snapshot_attrs(ast)?;
    let snapshot = match snapshot_type(ast)? {
        Some(ty) => ty.into_token_stream(),
        None => quote!(::omnipaxos::storage::NoSnapshot),
    };
    let name = &ast.ident;
    let mut generics = ast.generics.clone();
    if generics.type_params().next().is_some() {
        // `#[derive(Clone, Debug)]` only makes `Name<T>` `Clone + Debug` when `T` is; ask for
        // that rather than requiring the user to repeat the bounds on `T`.
        generics
            .make_where_clause()
            .predicates
            .push(parse_quote!(Self: ::core::clone::Clone + ::core::fmt::Debug));
    }
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    Ok(quote! {
        #[automatically_derived]
        impl #impl_generics ::omnipaxos::storage::Entry for #name #ty_generics #where_clause {
            type Snapshot = #snapshot;
        }
    })
}

const EXPECTED: &str =
    "expected `#[snapshot(Type)]` naming the snapshot type, e.g. `#[snapshot(KVSnapshot)]`";

fn snapshot_type(ast: &DeriveInput) -> syn::Result<Option<Type>> {
    let mut found: Option<Type> = None;
    for attr in snapshot_attrs(&ast.attrs) {
        let list = match &attr.meta {
            syn::Meta::List(list) if matches!(list.delimiter, MacroDelimiter::Paren(_)) => list,
            other => return Err(syn::Error::new_spanned(other, EXPECTED)),
        };
        if list.tokens.is_empty() {
            return Err(syn::Error::new_spanned(
                list,
                format!("{EXPECTED}, found no type"),
            ));
        }
        let ty = parse_one_type(&list.tokens)?;
        if found.is_some() {
            return Err(syn::Error::new_spanned(
                attr,
                "only one `#[snapshot(Type)]` attribute is allowed",
            ));
        }
        found = Some(ty);
    }
    Ok(found)
}

/// The one type in `#[snapshot(tokens)]` (a trailing comma is fine), or an error that says
/// what is wrong with `tokens`.
fn parse_one_type(tokens: &proc_macro2::TokenStream) -> syn::Result<Type> {
    let parser = Punctuated::<Type, Token![,]>::parse_terminated;
    let message = match parser.parse2(tokens.clone()) {
        Ok(types) if types.len() == 1 => {
            return Ok(types.into_iter().next().expect("one type"));
        }
        Ok(types) => format!(
            "`#[snapshot(..)]` takes exactly one type, found {}: `{tokens}`",
            types.len()
        ),
        Err(_) => match syn::parse2::<LitStr>(tokens.clone()) {
            Ok(lit) => format!(
                "write the snapshot type without quotes: `#[snapshot({})]`",
                lit.value()
            ),
            Err(_) => format!("`{tokens}` is not a type; {EXPECTED}"),
        },
    };
    Err(syn::Error::new_spanned(tokens, message))
}

fn snapshot_attrs(attrs: &[Attribute]) -> impl Iterator<Item = &Attribute> {
    attrs.iter().filter(|a| a.path().is_ident("snapshot"))
}

/// `snapshot` is registered as a helper attribute, so rustc accepts it on fields and variants
/// too; there it would be silently ignored.
fn reject_inner_snapshot_attrs(ast: &DeriveInput) -> syn::Result<()> {
    let misplaced = |attrs: &[Attribute]| -> syn::Result<()> {
        match snapshot_attrs(attrs).next() {
            Some(attr) => Err(syn::Error::new_spanned(
                attr,
                "`#[snapshot(Type)]` belongs on the entry type itself, not on a field or variant",
            )),
            None => Ok(()),
        }
    };
    let fields = |fields: &syn::Fields| -> syn::Result<()> {
        fields.iter().try_for_each(|f| misplaced(&f.attrs))
    };
    match &ast.data {
        syn::Data::Struct(s) => fields(&s.fields),
        syn::Data::Enum(e) => e.variants.iter().try_for_each(|v| {
            misplaced(&v.attrs)?;
            fields(&v.fields)
        }),
        syn::Data::Union(_) => Ok(()),
    }
}
