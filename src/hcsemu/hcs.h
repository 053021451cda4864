/*
 * The C ABI of computecore.dll and computestorage.dll, as the HCS emulator exports it.
 *
 * The names, types and signatures are those of the Windows SDK headers (computecore.h,
 * computedefs.h, computestorage.h); tools/check_abi.c compiles HCS_FUNCTIONS against the
 * SDK's own declarations with mingw-w64, so a drift fails CI. On Linux the Windows scalar
 * types are spelled out here: WCHAR is 16 bits (UTF-16) exactly as on Windows.
 */
#ifndef HCSEMU_HCS_H
#define HCSEMU_HCS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef HCSEMU_USE_WINDOWS_TYPES
typedef int32_t HRESULT;
typedef uint32_t DWORD;
typedef uint64_t UINT64;
typedef uint16_t WCHAR;
typedef WCHAR *PWSTR;
typedef const WCHAR *PCWSTR;
typedef void *HANDLE;
typedef void *HLOCAL;
typedef struct SECURITY_DESCRIPTOR SECURITY_DESCRIPTOR; /* reserved: always NULL */

typedef struct HCS_OPERATION__ *HCS_OPERATION;
typedef struct HCS_SYSTEM__ *HCS_SYSTEM;
typedef struct HCS_PROCESS__ *HCS_PROCESS;
typedef struct HCS_CALLBACK__ *HCS_CALLBACK;

typedef enum HCS_OPERATION_TYPE {
    HcsOperationTypeNone = -1,
    HcsOperationTypeEnumerate = 0,
    HcsOperationTypeCreate = 1,
    HcsOperationTypeStart = 2,
    HcsOperationTypeShutdown = 3,
    HcsOperationTypePause = 4,
    HcsOperationTypeResume = 5,
    HcsOperationTypeSave = 6,
    HcsOperationTypeTerminate = 7,
    HcsOperationTypeModify = 8,
    HcsOperationTypeGetProperties = 9,
    HcsOperationTypeCreateProcess = 10,
    HcsOperationTypeSignalProcess = 11,
    HcsOperationTypeGetProcessInfo = 12,
    HcsOperationTypeGetProcessProperties = 13,
    HcsOperationTypeModifyProcess = 14,
    HcsOperationTypeCrash = 15
} HCS_OPERATION_TYPE;

#define HCS_INVALID_OPERATION_ID ((UINT64)-1)

typedef void (*HCS_OPERATION_COMPLETION)(HCS_OPERATION operation, void *context);

typedef enum HCS_EVENT_TYPE {
    HcsEventInvalid = 0x00000000,
    HcsEventSystemExited = 0x00000001,
    HcsEventSystemCrashInitiated = 0x00000002,
    HcsEventSystemCrashReport = 0x00000003,
    HcsEventSystemRdpEnhancedModeStateChanged = 0x00000004,
    HcsEventSystemSiloJobCreated = 0x00000005,
    HcsEventSystemGuestConnectionClosed = 0x00000006,
    HcsEventProcessExited = 0x00010000,
    HcsEventOperationCallback = 0x01000000,
    HcsEventServiceDisconnect = 0x02000000
} HCS_EVENT_TYPE;

typedef struct HCS_EVENT {
    HCS_EVENT_TYPE Type;
    PCWSTR EventData;
    HCS_OPERATION Operation;
} HCS_EVENT;

typedef enum HCS_EVENT_OPTIONS {
    HcsEventOptionNone = 0x00000000,
    HcsEventOptionEnableOperationCallbacks = 0x00000001
} HCS_EVENT_OPTIONS;

typedef void (*HCS_EVENT_CALLBACK)(HCS_EVENT *event, void *context);

typedef struct HCS_PROCESS_INFORMATION {
    DWORD ProcessId;
    DWORD Reserved;
    HANDLE StdInput;
    HANDLE StdOutput;
    HANDLE StdError;
} HCS_PROCESS_INFORMATION;

#define GENERIC_ALL 0x10000000u
#define INFINITE 0xFFFFFFFFu
#endif /* HCSEMU_USE_WINDOWS_TYPES */

/*
 * Every exported function, once: X(return type, name, (parameter list)).
 * The emulator defines them, check_abi.c compares them with the SDK, and the Python
 * backends' prototype tables are tested against this list.
 */
#define HCS_COMPUTECORE_FUNCTIONS(X)                                                              \
    X(HRESULT, HcsEnumerateComputeSystems, (PCWSTR query, HCS_OPERATION operation))               \
    X(HCS_OPERATION, HcsCreateOperation, (const void *context, HCS_OPERATION_COMPLETION callback)) \
    X(void, HcsCloseOperation, (HCS_OPERATION operation))                                         \
    X(void *, HcsGetOperationContext, (HCS_OPERATION operation))                                  \
    X(HRESULT, HcsSetOperationContext, (HCS_OPERATION operation, const void *context))            \
    X(HCS_SYSTEM, HcsGetComputeSystemFromOperation, (HCS_OPERATION operation))                    \
    X(HCS_PROCESS, HcsGetProcessFromOperation, (HCS_OPERATION operation))                         \
    X(HCS_OPERATION_TYPE, HcsGetOperationType, (HCS_OPERATION operation))                         \
    X(UINT64, HcsGetOperationId, (HCS_OPERATION operation))                                       \
    X(HRESULT, HcsGetOperationResult, (HCS_OPERATION operation, PWSTR * resultDocument))          \
    X(HRESULT, HcsGetOperationResultAndProcessInfo,                                               \
      (HCS_OPERATION operation, HCS_PROCESS_INFORMATION * processInformation,                     \
       PWSTR * resultDocument))                                                                   \
    X(HRESULT, HcsGetProcessorCompatibilityFromSavedState,                                        \
      (PCWSTR RuntimeFileName, PCWSTR * ProcessorFeaturesString))                                 \
    X(HRESULT, HcsWaitForOperationResult,                                                         \
      (HCS_OPERATION operation, DWORD timeoutMs, PWSTR * resultDocument))                         \
    X(HRESULT, HcsWaitForOperationResultAndProcessInfo,                                           \
      (HCS_OPERATION operation, DWORD timeoutMs, HCS_PROCESS_INFORMATION * processInformation,    \
       PWSTR * resultDocument))                                                                   \
    X(HRESULT, HcsSetOperationCallback,                                                           \
      (HCS_OPERATION operation, const void *context, HCS_OPERATION_COMPLETION callback))          \
    X(HRESULT, HcsCancelOperation, (HCS_OPERATION operation))                                     \
    X(HRESULT, HcsCreateComputeSystem,                                                            \
      (PCWSTR id, PCWSTR configuration, HCS_OPERATION operation,                                  \
       const SECURITY_DESCRIPTOR *securityDescriptor, HCS_SYSTEM *computeSystem))                 \
    X(HRESULT, HcsOpenComputeSystem, (PCWSTR id, DWORD requestedAccess, HCS_SYSTEM * computeSystem)) \
    X(void, HcsCloseComputeSystem, (HCS_SYSTEM computeSystem))                                    \
    X(HRESULT, HcsStartComputeSystem, (HCS_SYSTEM computeSystem, HCS_OPERATION operation, PCWSTR options)) \
    X(HRESULT, HcsShutDownComputeSystem,                                                          \
      (HCS_SYSTEM computeSystem, HCS_OPERATION operation, PCWSTR options))                        \
    X(HRESULT, HcsTerminateComputeSystem,                                                         \
      (HCS_SYSTEM computeSystem, HCS_OPERATION operation, PCWSTR options))                        \
    X(HRESULT, HcsCrashComputeSystem, (HCS_SYSTEM computeSystem, HCS_OPERATION operation, PCWSTR options)) \
    X(HRESULT, HcsPauseComputeSystem, (HCS_SYSTEM computeSystem, HCS_OPERATION operation, PCWSTR options)) \
    X(HRESULT, HcsResumeComputeSystem,                                                            \
      (HCS_SYSTEM computeSystem, HCS_OPERATION operation, PCWSTR options))                        \
    X(HRESULT, HcsSaveComputeSystem, (HCS_SYSTEM computeSystem, HCS_OPERATION operation, PCWSTR options)) \
    X(HRESULT, HcsGetComputeSystemProperties,                                                     \
      (HCS_SYSTEM computeSystem, HCS_OPERATION operation, PCWSTR propertyQuery))                  \
    X(HRESULT, HcsModifyComputeSystem,                                                            \
      (HCS_SYSTEM computeSystem, HCS_OPERATION operation, PCWSTR configuration, HANDLE identity)) \
    X(HRESULT, HcsWaitForComputeSystemExit, (HCS_SYSTEM computeSystem, DWORD timeoutMs, PWSTR * result)) \
    X(HRESULT, HcsSetComputeSystemCallback,                                                       \
      (HCS_SYSTEM computeSystem, HCS_EVENT_OPTIONS callbackOptions, const void *context,           \
       HCS_EVENT_CALLBACK callback))                                                              \
    X(HRESULT, HcsCreateProcess,                                                                  \
      (HCS_SYSTEM computeSystem, PCWSTR processParameters, HCS_OPERATION operation,               \
       const SECURITY_DESCRIPTOR *securityDescriptor, HCS_PROCESS *process))                      \
    X(HRESULT, HcsOpenProcess,                                                                    \
      (HCS_SYSTEM computeSystem, DWORD processId, DWORD requestedAccess, HCS_PROCESS * process))  \
    X(void, HcsCloseProcess, (HCS_PROCESS process))                                               \
    X(HRESULT, HcsTerminateProcess, (HCS_PROCESS process, HCS_OPERATION operation, PCWSTR options)) \
    X(HRESULT, HcsSignalProcess, (HCS_PROCESS process, HCS_OPERATION operation, PCWSTR options))  \
    X(HRESULT, HcsGetProcessInfo, (HCS_PROCESS process, HCS_OPERATION operation))                 \
    X(HRESULT, HcsGetProcessProperties,                                                           \
      (HCS_PROCESS process, HCS_OPERATION operation, PCWSTR propertyQuery))                       \
    X(HRESULT, HcsModifyProcess, (HCS_PROCESS process, HCS_OPERATION operation, PCWSTR settings)) \
    X(HRESULT, HcsSetProcessCallback,                                                             \
      (HCS_PROCESS process, HCS_EVENT_OPTIONS callbackOptions, void *context,                     \
       HCS_EVENT_CALLBACK callback))                                                              \
    X(HRESULT, HcsWaitForProcessExit, (HCS_PROCESS computeSystem, DWORD timeoutMs, PWSTR * result)) \
    X(HRESULT, HcsGetServiceProperties, (PCWSTR propertyQuery, PWSTR * result))                   \
    X(HRESULT, HcsModifyServiceSettings, (PCWSTR settings, PWSTR * result))                       \
    X(HRESULT, HcsSubmitWerReport, (PCWSTR settings))                                             \
    X(HRESULT, HcsCreateEmptyGuestStateFile, (PCWSTR guestStateFilePath))                         \
    X(HRESULT, HcsCreateEmptyRuntimeStateFile, (PCWSTR runtimeStateFilePath))                     \
    X(HRESULT, HcsGrantVmAccess, (PCWSTR vmId, PCWSTR filePath))                                  \
    X(HRESULT, HcsRevokeVmAccess, (PCWSTR vmId, PCWSTR filePath))                                 \
    X(HRESULT, HcsGrantVmGroupAccess, (PCWSTR filePath))                                          \
    X(HRESULT, HcsRevokeVmGroupAccess, (PCWSTR filePath))

#define HCS_COMPUTESTORAGE_FUNCTIONS(X)                                                           \
    X(HRESULT, HcsImportLayer, (PCWSTR layerPath, PCWSTR sourceFolderPath, PCWSTR layerData))     \
    X(HRESULT, HcsExportLayer,                                                                    \
      (PCWSTR layerPath, PCWSTR exportFolderPath, PCWSTR layerData, PCWSTR options))              \
    X(HRESULT, HcsExportLegacyWritableLayer,                                                      \
      (PCWSTR writableLayerMountPath, PCWSTR writableLayerFolderPath, PCWSTR exportFolderPath,    \
       PCWSTR layerData))                                                                         \
    X(HRESULT, HcsDestroyLayer, (PCWSTR layerPath))                                               \
    X(HRESULT, HcsSetupBaseOSLayer, (PCWSTR layerPath, HANDLE vhdHandle, PCWSTR options))         \
    X(HRESULT, HcsInitializeWritableLayer, (PCWSTR writableLayerPath, PCWSTR layerData, PCWSTR options)) \
    X(HRESULT, HcsInitializeLegacyWritableLayer,                                                  \
      (PCWSTR writableLayerMountPath, PCWSTR writableLayerFolderPath, PCWSTR layerData,           \
       PCWSTR options))                                                                           \
    X(HRESULT, HcsAttachLayerStorageFilter, (PCWSTR layerPath, PCWSTR layerData))                 \
    X(HRESULT, HcsDetachLayerStorageFilter, (PCWSTR layerPath))                                   \
    X(HRESULT, HcsFormatWritableLayerVhd, (HANDLE vhdHandle))                                     \
    X(HRESULT, HcsGetLayerVhdMountPath, (HANDLE vhdHandle, PWSTR * mountPath))                    \
    X(HRESULT, HcsSetupBaseOSVolume, (PCWSTR layerPath, PCWSTR volumePath, PCWSTR options))

#ifndef HCSEMU_USE_WINDOWS_TYPES
#define HCSEMU_DECLARE(ret, name, params) __attribute__((visibility("default"))) ret name params;
HCS_COMPUTECORE_FUNCTIONS(HCSEMU_DECLARE)
HCS_COMPUTESTORAGE_FUNCTIONS(HCSEMU_DECLARE)
/* Result documents are freed by the caller with LocalFree, as on Windows. */
__attribute__((visibility("default"))) HLOCAL LocalFree(HLOCAL mem);
#undef HCSEMU_DECLARE
#endif

#ifdef __cplusplus
}
#endif
#endif /* HCSEMU_HCS_H */
