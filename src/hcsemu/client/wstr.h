/* UTF-16 and result documents (wstr.c): the client half's side of every string. */
#ifndef HCSEMU_WSTR_H
#define HCSEMU_WSTR_H

#include "emu.h"

/* UTF-16 -> malloc'd UTF-8; NULL for NULL input. *ok=false on invalid UTF-16 (lone surrogate). */
char *emu_utf8(PCWSTR w, bool *ok);
/* A result document for the caller: allocated so that the exported LocalFree frees it. */
PWSTR emu_doc(const char *utf8);
PWSTR emu_doc_json(const json *v);
/* Duplicate a document handed out earlier (for repeated Get/Wait). */
size_t emu_live_documents(void);
bool emu_is_empty(PCWSTR w); /* NULL or L"" */
/* Parse an optional JSON argument: NULL/"" -> *out=NULL, S_OK. Otherwise HCS_E_INVALID_JSON with *err. */
HRESULT emu_parse_optional(PCWSTR w, json **out, char **err);


#endif /* HCSEMU_WSTR_H */
