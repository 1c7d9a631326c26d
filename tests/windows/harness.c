/* Test harness for the Windows tests (run under Wine by tests/windows_wine.rs).
 *
 * harness agent <nojob|job|breakaway> <count> <outprefix> <program> [args...]
 *     Models the Checkmk Windows agent running a plugin: for each of <count> concurrent
 *     children it creates a job (none, no limits, or BREAKAWAY_OK), starts the program
 *     suspended with stdout on a pipe and stderr on <outprefix>.<i>.err, assigns it to the job,
 *     resumes it, reads stdout to EOF into <outprefix>.<i>.out, waits for the process and then
 *     calls TerminateJobObject, as the agent does. Prints one line per child:
 *       child=I pid=P eof_ms=E exit_ms=X eof_after_exit_ms=D exit_code=C bytes=B
 *     eof_ms and exit_ms count from the child's creation (exit_ms = how long it ran); D is
 *     the wall-clock time from the child's exit to EOF; eof_ms=-1 if EOF did not come within
 *     20 s (something kept the pipe open).
 * harness alive <pid>        exit 0 if the process runs, 1 if not
 * harness count <exe name>   prints how many processes run that executable
 * harness tree <dir> <secs>  a runner: writes <dir>\runner.pid, starts
 *                            "harness sleep <dir>\grandchild.pid <secs>", sleeps <secs>
 * harness sleep <file> <secs> writes its PID to <file>, sleeps <secs>
 * harness copy <from> <to>   CopyFileW over an existing file; exit 0, or the Win32 error
 *
 * Build: x86_64-w64-mingw32-gcc -O2 -municode -o harness.exe harness.c
 */
#include <windows.h>
#include <tlhelp32.h>
#include <stdio.h>
#include <stdlib.h>
#include <wchar.h>

#define MAX_CHILDREN 64
#define EOF_PATIENCE_MS 20000

struct child {
    int index;
    HANDLE job, process, thread, out_read;
    DWORD pid;
    ULONGLONG created;   /* GetTickCount64 just before CreateProcessW */
    LONGLONG eof_ms;
    FILETIME eof_ft;     /* wall clock at EOF, comparable with the process's exit time */
    wchar_t out_path[MAX_PATH];
    DWORD bytes;
};

static void append_quoted(wchar_t *cmd, size_t cap, const wchar_t *arg)
{
    int quote = wcslen(arg) == 0 || wcschr(arg, L' ') || wcschr(arg, L'\t');
    if (cmd[0])
        wcsncat(cmd, L" ", cap - wcslen(cmd) - 1);
    if (quote)
        wcsncat(cmd, L"\"", cap - wcslen(cmd) - 1);
    wcsncat(cmd, arg, cap - wcslen(cmd) - 1);
    if (quote)
        wcsncat(cmd, L"\"", cap - wcslen(cmd) - 1);
}

static DWORD WINAPI reader(LPVOID p)
{
    struct child *c = p;
    HANDLE f = CreateFileW(c->out_path, GENERIC_WRITE, FILE_SHARE_READ, NULL, CREATE_ALWAYS,
                           FILE_ATTRIBUTE_NORMAL, NULL);
    char buf[4096];
    DWORD n, w;
    while (ReadFile(c->out_read, buf, sizeof buf, &n, NULL) && n > 0) {
        c->bytes += n;
        if (f != INVALID_HANDLE_VALUE)
            WriteFile(f, buf, n, &w, NULL);
    }
    c->eof_ms = (LONGLONG)(GetTickCount64() - c->created);
    GetSystemTimePreciseAsFileTime(&c->eof_ft);
    if (f != INVALID_HANDLE_VALUE)
        CloseHandle(f);
    return 0;
}

static int agent(int argc, wchar_t **argv)
{
    /* argv: harness agent mode count outprefix program args... */
    if (argc < 6) {
        fwprintf(stderr, L"usage: harness agent <nojob|job|breakaway> <count> <outprefix> <program> [args...]\n");
        return 2;
    }
    const wchar_t *mode = argv[2];
    int count = _wtoi(argv[3]);
    const wchar_t *prefix = argv[4];
    if (count < 1 || count > MAX_CHILDREN)
        return 2;
    static wchar_t cmd[32768];
    cmd[0] = 0;
    for (int i = 5; i < argc; i++)
        append_quoted(cmd, 32768, argv[i]);

    static struct child kids[MAX_CHILDREN];
    HANDLE readers[MAX_CHILDREN];
    SECURITY_ATTRIBUTES inherit = {sizeof inherit, NULL, TRUE};
    HANDLE nul = CreateFileW(L"NUL", GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE, &inherit,
                             OPEN_EXISTING, 0, NULL);
    for (int i = 0; i < count; i++) {
        struct child *c = &kids[i];
        c->index = i;
        swprintf(c->out_path, MAX_PATH, L"%ls.%d.out", prefix, i);
        wchar_t err_path[MAX_PATH];
        swprintf(err_path, MAX_PATH, L"%ls.%d.err", prefix, i);
        HANDLE err = CreateFileW(err_path, GENERIC_WRITE, FILE_SHARE_READ, &inherit,
                                 CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL, NULL);
        HANDLE out_write;
        if (!CreatePipe(&c->out_read, &out_write, &inherit, 0))
            return 3;
        SetHandleInformation(c->out_read, HANDLE_FLAG_INHERIT, 0);
        if (wcscmp(mode, L"nojob") != 0) {
            c->job = CreateJobObjectW(NULL, NULL);
            if (!c->job)
                return 4;
            if (wcscmp(mode, L"breakaway") == 0) {
                JOBOBJECT_EXTENDED_LIMIT_INFORMATION li;
                ZeroMemory(&li, sizeof li);
                li.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_BREAKAWAY_OK;
                if (!SetInformationJobObject(c->job, JobObjectExtendedLimitInformation, &li,
                                             sizeof li))
                    return 5;
            }
        }
        STARTUPINFOW si;
        ZeroMemory(&si, sizeof si);
        si.cb = sizeof si;
        si.dwFlags = STARTF_USESTDHANDLES;
        si.hStdInput = nul;
        si.hStdOutput = out_write;
        si.hStdError = err;
        PROCESS_INFORMATION pi;
        static wchar_t line[32768];
        wcscpy(line, cmd);
        c->created = GetTickCount64();
        if (!CreateProcessW(NULL, line, NULL, NULL, TRUE, CREATE_SUSPENDED, NULL, NULL, &si,
                            &pi)) {
            fwprintf(stderr, L"CreateProcessW failed: %lu\n", GetLastError());
            return 6;
        }
        if (c->job && !AssignProcessToJobObject(c->job, pi.hProcess)) {
            fwprintf(stderr, L"AssignProcessToJobObject failed: %lu\n", GetLastError());
            TerminateProcess(pi.hProcess, 1);
            return 7;
        }
        ResumeThread(pi.hThread);
        CloseHandle(out_write);
        CloseHandle(err);
        c->process = pi.hProcess;
        c->thread = pi.hThread;
        c->pid = pi.dwProcessId;
        c->eof_ms = -1;
        readers[i] = CreateThread(NULL, 0, reader, c, 0, NULL);
    }
    WaitForMultipleObjects(count, readers, TRUE, EOF_PATIENCE_MS);
    for (int i = 0; i < count; i++) {
        struct child *c = &kids[i];
        WaitForSingleObject(c->process, EOF_PATIENCE_MS);
        DWORD code = 0;
        GetExitCodeProcess(c->process, &code);
        FILETIME created, exited, k, u;
        LONGLONG exit_ms = -1, eof_after_exit_ms = -999999;
        if (code != STILL_ACTIVE && GetProcessTimes(c->process, &created, &exited, &k, &u)) {
            ULARGE_INTEGER a, b;
            a.LowPart = created.dwLowDateTime;
            a.HighPart = created.dwHighDateTime;
            b.LowPart = exited.dwLowDateTime;
            b.HighPart = exited.dwHighDateTime;
            exit_ms = (LONGLONG)((b.QuadPart - a.QuadPart) / 10000);
            if (c->eof_ms >= 0) {
                ULARGE_INTEGER e;
                e.LowPart = c->eof_ft.dwLowDateTime;
                e.HighPart = c->eof_ft.dwHighDateTime;
                eof_after_exit_ms = ((LONGLONG)e.QuadPart - (LONGLONG)b.QuadPart) / 10000;
            }
        }
        /* What the agent does once the plugin is done. */
        if (c->job)
            TerminateJobObject(c->job, 1);
        wprintf(L"child=%d pid=%lu eof_ms=%lld exit_ms=%lld eof_after_exit_ms=%lld exit_code=%lu "
                L"bytes=%lu\n",
                i, c->pid, c->eof_ms, exit_ms, eof_after_exit_ms, code, c->bytes);
    }
    fflush(stdout);
    return 0;
}

static int alive(DWORD pid)
{
    HANDLE h = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, FALSE, pid);
    DWORD code = 0;
    int up = h && GetExitCodeProcess(h, &code) && code == STILL_ACTIVE;
    wprintf(L"%ls\n", up ? L"alive" : L"gone");
    return up ? 0 : 1;
}

static int count(const wchar_t *name)
{
    HANDLE snap = CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0);
    PROCESSENTRY32W pe;
    pe.dwSize = sizeof pe;
    int n = 0;
    for (BOOL more = Process32FirstW(snap, &pe); more; more = Process32NextW(snap, &pe))
        if (_wcsicmp(pe.szExeFile, name) == 0)
            n++;
    wprintf(L"%d\n", n);
    return 0;
}

static void write_pid(const wchar_t *path)
{
    FILE *f = _wfopen(path, L"w");
    if (f) {
        fprintf(f, "%lu\n", GetCurrentProcessId());
        fclose(f);
    }
}

static int tree(const wchar_t *dir, const wchar_t *secs)
{
    wchar_t path[MAX_PATH], me[MAX_PATH], line[4 * MAX_PATH];
    GetModuleFileNameW(NULL, me, MAX_PATH);
    swprintf(line, 4 * MAX_PATH, L"\"%ls\" sleep \"%ls\\grandchild.pid\" %ls", me, dir, secs);
    STARTUPINFOW si;
    ZeroMemory(&si, sizeof si);
    si.cb = sizeof si;
    PROCESS_INFORMATION pi;
    if (!CreateProcessW(NULL, line, NULL, NULL, FALSE, CREATE_NO_WINDOW, NULL, NULL, &si, &pi))
        return 3;
    swprintf(path, MAX_PATH, L"%ls\\runner.pid", dir);
    write_pid(path);
    Sleep((DWORD)_wtoi(secs) * 1000);
    return 0;
}

int wmain(int argc, wchar_t **argv)
{
    if (argc >= 2 && wcscmp(argv[1], L"agent") == 0)
        return agent(argc, argv);
    if (argc == 3 && wcscmp(argv[1], L"alive") == 0)
        return alive((DWORD)_wtoi(argv[2]));
    if (argc == 3 && wcscmp(argv[1], L"count") == 0)
        return count(argv[2]);
    if (argc == 4 && wcscmp(argv[1], L"tree") == 0)
        return tree(argv[2], argv[3]);
    if (argc == 4 && wcscmp(argv[1], L"sleep") == 0) {
        write_pid(argv[2]);
        Sleep((DWORD)_wtoi(argv[3]) * 1000);
        return 0;
    }
    if (argc == 4 && wcscmp(argv[1], L"copy") == 0) {
        if (CopyFileW(argv[2], argv[3], FALSE)) {
            wprintf(L"copied\n");
            return 0;
        }
        DWORD e = GetLastError();
        wprintf(L"error %lu\n", e);
        return (int)e;
    }
    fwprintf(stderr, L"usage: see harness.c\n");
    return 2;
}
