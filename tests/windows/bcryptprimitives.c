/* Wine 8 lacks bcryptprimitives.dll, from which Rust's std (>= 1.78) imports ProcessPrng:
 * without it every Rust .exe exits with code 53 before main. This stand-in fills the buffer
 * with RtlGenRandom (SystemFunction036, advapi32). Test use only; placed next to the .exe.
 * Build: x86_64-w64-mingw32-gcc -shared -O2 -o bcryptprimitives.dll bcryptprimitives.c \
 *        bcryptprimitives.def -ladvapi32 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
