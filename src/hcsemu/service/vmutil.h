/* VM utilities of the service (vmutil.c): UTF-8 paths in, an internal HRESULT out. */
#ifndef HCSEMU_VMUTIL_H
#define HCSEMU_VMUTIL_H

#include "emu.h"

/* HcsCreateEmpty{Guest,Runtime}StateFile: creates path exclusively. */
HRESULT svc_vm_create_state_file(const char *path, bool runtime);
/* Grants (grant) or revokes the access of VM vm to path; vm NULL: the "Virtual Machines" group.
 * runtime_id: the RuntimeId of the compute system vm names, or NULL if none does. */
HRESULT svc_vm_change_access(const char *vm, const char *runtime_id, const char *path, bool grant);
/* The ProcessorRequirements a runtime state file saved (*doc: JSON text, malloc'd). */
HRESULT svc_vm_saved_processor_requirements(const char *path, char **doc);

#endif /* HCSEMU_VMUTIL_H */
