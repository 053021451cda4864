# cython: language_level=3
#
# The C ABI of computecore.dll and computestorage.dll: declarations only, in the order of
# src/hcsemu/hcs.h (which follows the Windows SDK's computedefs.h, computecore.h and
# computestorage.h). No code lives here.
#
# pyhcs._core never calls these functions by name: it calls through the table of function
# pointers that _loader.h fills at import (so one build serves the emulator and the real DLLs,
# and a missing export costs one function, not the import). The prototypes are declared anyway
# as the single Cython statement of the ABI, next to the types they use.
#
# The two callback typedefs are explicitly `noexcept nogil`: the library calls them on its own
# threads, where no Python exception can be raised and the GIL is not held (Cython 3 would
# otherwise assume a function pointer may raise, and take the GIL after each call to check).

from libc.stdint cimport int32_t, uint16_t, uint32_t, uint64_t

cdef extern from "hcs.h" nogil:

    # ---------------------------------------------------------------- scalar types
    ctypedef int32_t HRESULT
    ctypedef uint32_t DWORD
    ctypedef uint64_t UINT64
    ctypedef uint16_t WCHAR         # UTF-16 code unit on every platform
    ctypedef WCHAR* PWSTR
    ctypedef const WCHAR* PCWSTR
    ctypedef void* HANDLE
    ctypedef void* HLOCAL
    ctypedef struct SECURITY_DESCRIPTOR:
        pass                        # reserved: always NULL

    # ---------------------------------------------------------------- opaque handles
    cdef struct HCS_OPERATION__
    cdef struct HCS_SYSTEM__
    cdef struct HCS_PROCESS__
    cdef struct HCS_CALLBACK__
    ctypedef HCS_OPERATION__* HCS_OPERATION
    ctypedef HCS_SYSTEM__* HCS_SYSTEM
    ctypedef HCS_PROCESS__* HCS_PROCESS
    ctypedef HCS_CALLBACK__* HCS_CALLBACK

    # ---------------------------------------------------------------- operations
    ctypedef enum HCS_OPERATION_TYPE:
        HcsOperationTypeNone
        HcsOperationTypeEnumerate
        HcsOperationTypeCreate
        HcsOperationTypeStart
        HcsOperationTypeShutdown
        HcsOperationTypePause
        HcsOperationTypeResume
        HcsOperationTypeSave
        HcsOperationTypeTerminate
        HcsOperationTypeModify
        HcsOperationTypeGetProperties
        HcsOperationTypeCreateProcess
        HcsOperationTypeSignalProcess
        HcsOperationTypeGetProcessInfo
        HcsOperationTypeGetProcessProperties
        HcsOperationTypeModifyProcess
        HcsOperationTypeCrash

    UINT64 HCS_INVALID_OPERATION_ID

    ctypedef void (*HCS_OPERATION_COMPLETION)(HCS_OPERATION operation, void* context) noexcept nogil

    # ---------------------------------------------------------------- events
    ctypedef enum HCS_EVENT_TYPE:
        HcsEventInvalid
        HcsEventSystemExited
        HcsEventSystemCrashInitiated
        HcsEventSystemCrashReport
        HcsEventSystemRdpEnhancedModeStateChanged
        HcsEventSystemSiloJobCreated
        HcsEventSystemGuestConnectionClosed
        HcsEventProcessExited
        HcsEventOperationCallback
        HcsEventServiceDisconnect

    ctypedef struct HCS_EVENT:
        HCS_EVENT_TYPE Type
        PCWSTR EventData            # owned by the library, valid only during the callback
        HCS_OPERATION Operation

    ctypedef enum HCS_EVENT_OPTIONS:
        HcsEventOptionNone
        HcsEventOptionEnableOperationCallbacks

    ctypedef void (*HCS_EVENT_CALLBACK)(HCS_EVENT* event, void* context) noexcept nogil

    # ---------------------------------------------------------------- processes
    ctypedef struct HCS_PROCESS_INFORMATION:
        DWORD ProcessId
        DWORD Reserved
        HANDLE StdInput             # owned by the caller once returned
        HANDLE StdOutput
        HANDLE StdError

    DWORD GENERIC_ALL
    DWORD INFINITE

    # ---------------------------------------------------------------- computecore.dll
    HRESULT HcsEnumerateComputeSystems(PCWSTR query, HCS_OPERATION operation)
    HCS_OPERATION HcsCreateOperation(const void* context, HCS_OPERATION_COMPLETION callback)
    void HcsCloseOperation(HCS_OPERATION operation)
    void* HcsGetOperationContext(HCS_OPERATION operation)
    HRESULT HcsSetOperationContext(HCS_OPERATION operation, const void* context)
    HCS_SYSTEM HcsGetComputeSystemFromOperation(HCS_OPERATION operation)
    HCS_PROCESS HcsGetProcessFromOperation(HCS_OPERATION operation)
    HCS_OPERATION_TYPE HcsGetOperationType(HCS_OPERATION operation)
    UINT64 HcsGetOperationId(HCS_OPERATION operation)
    HRESULT HcsGetOperationResult(HCS_OPERATION operation, PWSTR* resultDocument)
    HRESULT HcsGetOperationResultAndProcessInfo(
        HCS_OPERATION operation, HCS_PROCESS_INFORMATION* processInformation, PWSTR* resultDocument)
    HRESULT HcsGetProcessorCompatibilityFromSavedState(PCWSTR RuntimeFileName, PCWSTR* ProcessorFeaturesString)
    HRESULT HcsWaitForOperationResult(HCS_OPERATION operation, DWORD timeoutMs, PWSTR* resultDocument)
    HRESULT HcsWaitForOperationResultAndProcessInfo(
        HCS_OPERATION operation, DWORD timeoutMs, HCS_PROCESS_INFORMATION* processInformation,
        PWSTR* resultDocument)
    HRESULT HcsSetOperationCallback(HCS_OPERATION operation, const void* context, HCS_OPERATION_COMPLETION callback)
    HRESULT HcsCancelOperation(HCS_OPERATION operation)
    HRESULT HcsCreateComputeSystem(
        PCWSTR id, PCWSTR configuration, HCS_OPERATION operation,
        const SECURITY_DESCRIPTOR* securityDescriptor, HCS_SYSTEM* computeSystem)
    HRESULT HcsOpenComputeSystem(PCWSTR id, DWORD requestedAccess, HCS_SYSTEM* computeSystem)
    void HcsCloseComputeSystem(HCS_SYSTEM computeSystem)
    HRESULT HcsStartComputeSystem(HCS_SYSTEM computeSystem, HCS_OPERATION operation, PCWSTR options)
    HRESULT HcsShutDownComputeSystem(HCS_SYSTEM computeSystem, HCS_OPERATION operation, PCWSTR options)
    HRESULT HcsTerminateComputeSystem(HCS_SYSTEM computeSystem, HCS_OPERATION operation, PCWSTR options)
    HRESULT HcsCrashComputeSystem(HCS_SYSTEM computeSystem, HCS_OPERATION operation, PCWSTR options)
    HRESULT HcsPauseComputeSystem(HCS_SYSTEM computeSystem, HCS_OPERATION operation, PCWSTR options)
    HRESULT HcsResumeComputeSystem(HCS_SYSTEM computeSystem, HCS_OPERATION operation, PCWSTR options)
    HRESULT HcsSaveComputeSystem(HCS_SYSTEM computeSystem, HCS_OPERATION operation, PCWSTR options)
    HRESULT HcsGetComputeSystemProperties(HCS_SYSTEM computeSystem, HCS_OPERATION operation, PCWSTR propertyQuery)
    HRESULT HcsModifyComputeSystem(
        HCS_SYSTEM computeSystem, HCS_OPERATION operation, PCWSTR configuration, HANDLE identity)
    HRESULT HcsWaitForComputeSystemExit(HCS_SYSTEM computeSystem, DWORD timeoutMs, PWSTR* result)
    HRESULT HcsSetComputeSystemCallback(
        HCS_SYSTEM computeSystem, HCS_EVENT_OPTIONS callbackOptions, const void* context,
        HCS_EVENT_CALLBACK callback)
    HRESULT HcsCreateProcess(
        HCS_SYSTEM computeSystem, PCWSTR processParameters, HCS_OPERATION operation,
        const SECURITY_DESCRIPTOR* securityDescriptor, HCS_PROCESS* process)
    HRESULT HcsOpenProcess(HCS_SYSTEM computeSystem, DWORD processId, DWORD requestedAccess, HCS_PROCESS* process)
    void HcsCloseProcess(HCS_PROCESS process)
    HRESULT HcsTerminateProcess(HCS_PROCESS process, HCS_OPERATION operation, PCWSTR options)
    HRESULT HcsSignalProcess(HCS_PROCESS process, HCS_OPERATION operation, PCWSTR options)
    HRESULT HcsGetProcessInfo(HCS_PROCESS process, HCS_OPERATION operation)
    HRESULT HcsGetProcessProperties(HCS_PROCESS process, HCS_OPERATION operation, PCWSTR propertyQuery)
    HRESULT HcsModifyProcess(HCS_PROCESS process, HCS_OPERATION operation, PCWSTR settings)
    HRESULT HcsSetProcessCallback(
        HCS_PROCESS process, HCS_EVENT_OPTIONS callbackOptions, void* context, HCS_EVENT_CALLBACK callback)
    HRESULT HcsWaitForProcessExit(HCS_PROCESS computeSystem, DWORD timeoutMs, PWSTR* result)
    HRESULT HcsGetServiceProperties(PCWSTR propertyQuery, PWSTR* result)
    HRESULT HcsModifyServiceSettings(PCWSTR settings, PWSTR* result)
    HRESULT HcsSubmitWerReport(PCWSTR settings)
    HRESULT HcsCreateEmptyGuestStateFile(PCWSTR guestStateFilePath)
    HRESULT HcsCreateEmptyRuntimeStateFile(PCWSTR runtimeStateFilePath)
    HRESULT HcsGrantVmAccess(PCWSTR vmId, PCWSTR filePath)
    HRESULT HcsRevokeVmAccess(PCWSTR vmId, PCWSTR filePath)
    HRESULT HcsGrantVmGroupAccess(PCWSTR filePath)
    HRESULT HcsRevokeVmGroupAccess(PCWSTR filePath)

    # ---------------------------------------------------------------- computestorage.dll
    HRESULT HcsImportLayer(PCWSTR layerPath, PCWSTR sourceFolderPath, PCWSTR layerData)
    HRESULT HcsExportLayer(PCWSTR layerPath, PCWSTR exportFolderPath, PCWSTR layerData, PCWSTR options)
    HRESULT HcsExportLegacyWritableLayer(
        PCWSTR writableLayerMountPath, PCWSTR writableLayerFolderPath, PCWSTR exportFolderPath, PCWSTR layerData)
    HRESULT HcsDestroyLayer(PCWSTR layerPath)
    HRESULT HcsSetupBaseOSLayer(PCWSTR layerPath, HANDLE vhdHandle, PCWSTR options)
    HRESULT HcsInitializeWritableLayer(PCWSTR writableLayerPath, PCWSTR layerData, PCWSTR options)
    HRESULT HcsInitializeLegacyWritableLayer(
        PCWSTR writableLayerMountPath, PCWSTR writableLayerFolderPath, PCWSTR layerData, PCWSTR options)
    HRESULT HcsAttachLayerStorageFilter(PCWSTR layerPath, PCWSTR layerData)
    HRESULT HcsDetachLayerStorageFilter(PCWSTR layerPath)
    HRESULT HcsFormatWritableLayerVhd(HANDLE vhdHandle)
    HRESULT HcsGetLayerVhdMountPath(HANDLE vhdHandle, PWSTR* mountPath)
    HRESULT HcsSetupBaseOSVolume(PCWSTR layerPath, PCWSTR volumePath, PCWSTR options)

    # Result documents are freed by the caller with LocalFree (kernel32 on Windows; the
    # emulator exports its own).
    HLOCAL LocalFree(HLOCAL mem)
