// P/Invoke declarations of the engine's C ABI (include/presence.h).
//
// Portable marshalling only (Mono, IL2CPP, .NET): strings go in as NUL-terminated
// UTF-8 byte[] (null -> NULL) and come out as IntPtr decoded here in one pass over the
// native bytes (no per-byte marshalling calls, no intermediate array); C bool is
// marshalled as one byte; callbacks are a plain delegate type, never delegate*.
using System;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;

namespace Presence
{
    /// <summary>Result of every C call (PresenceResult in presence.h).</summary>
    public enum PresenceResult
    {
        /// <summary>PRESENCE_OK</summary>
        Ok = 0,
        /// <summary>PRESENCE_ERR_NULL: a required pointer argument was NULL.</summary>
        Null = 1,
        /// <summary>PRESENCE_ERR_UTF8: a string argument was not UTF-8.</summary>
        Utf8 = 2,
        /// <summary>PRESENCE_ERR_JSON: a JSON argument did not parse, or had the wrong shape.</summary>
        Json = 3,
        /// <summary>PRESENCE_ERR_INVALID: a value broke a documented rule.</summary>
        Invalid = 4,
        /// <summary>PRESENCE_ERR_NOT_FOUND: unknown user, channel, connection or listener.</summary>
        NotFound = 5,
        /// <summary>PRESENCE_ERR_LIMIT: a configured limit would be exceeded.</summary>
        Limit = 6,
        /// <summary>PRESENCE_ERR_STATE: not allowed in the engine's current state.</summary>
        State = 7,
        /// <summary>PRESENCE_ERR_IO: a file operation failed.</summary>
        Io = 8,
        /// <summary>PRESENCE_ERR_PANIC: an internal bug, caught at the boundary.</summary>
        Panic = 9,
    }

    /// <summary>PresenceEventInfoCallback: void (*)(void *user_data, const PresenceEventInfo *event).</summary>
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    public delegate void PresenceEventInfoCallback(IntPtr userData, IntPtr info);

    /// <summary>struct PresenceEventInfo, as laid out in C (read in place, never copied).
    /// Strings are byte pointers rather than IntPtr: Mono compiles a pointer's null test
    /// inline, but an IntPtr comparison may cost a call.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal unsafe struct NativeEventInfo
    {
        public uint Kind;
        public ulong Seq;
        public ulong ConnectionId;
        public byte* UserId;
        public byte* Cid;
        public byte Online;
        public byte Invisible;
        public byte* Status;
        public long LastActiveMs;
        public long WatcherCount;
        public uint CloseReason;
        public long CreatedAtMs;
        public ulong ClosedConnectionId;
        public IntPtr TypeName;
        public ulong Dropped;
        public uint UserIdLen;
        public uint CidLen;
        public uint StatusLen;
        public ulong UserKey;
    }

    internal static class NativeMethods
    {
#if UNITY_IOS && !UNITY_EDITOR
        internal const string Lib = "__Internal";
#else
        internal const string Lib = "presence";
#endif
        private const CallingConvention Cdecl = CallingConvention.Cdecl;

        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern uint presence_abi_version();
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern IntPtr presence_version();
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern IntPtr presence_result_name(PresenceResult r);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern IntPtr presence_last_error();
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern void presence_string_free(IntPtr s);

        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern PresenceResult presence_engine_new(byte[] configJson, out IntPtr engine);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern void presence_engine_free(IntPtr engine);

        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern PresenceResult presence_connect(IntPtr e, byte[] userJson, out ulong conn);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern PresenceResult presence_connect_user(IntPtr e, byte[] userId, out ulong conn);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern PresenceResult presence_disconnect(IntPtr e, ulong conn);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern PresenceResult presence_heartbeat(IntPtr e, ulong conn);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern PresenceResult presence_upsert_user(IntPtr e, byte[] userJson);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern PresenceResult presence_set_invisible(IntPtr e, byte[] userId, [MarshalAs(UnmanagedType.U1)] bool invisible);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern PresenceResult presence_set_status(IntPtr e, byte[] userId, byte[] status);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern PresenceResult presence_get_user(IntPtr e, ulong viewer, byte[] userId, out IntPtr json);

        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern PresenceResult presence_upsert_channel(IntPtr e, byte[] channelJson);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern PresenceResult presence_add_members(IntPtr e, byte[] cid, byte[] userIdsJson);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern PresenceResult presence_remove_members(IntPtr e, byte[] cid, byte[] userIdsJson);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern PresenceResult presence_delete_channel(IntPtr e, byte[] cid);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern PresenceResult presence_unsubscribe_user(IntPtr e, ulong conn, byte[] userId);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern PresenceResult presence_watch_channel(IntPtr e, ulong conn, byte[] cid, [MarshalAs(UnmanagedType.U1)] bool presence, out IntPtr stateJson);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern PresenceResult presence_stop_watching(IntPtr e, ulong conn, byte[] cid);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern PresenceResult presence_query_users(IntPtr e, ulong viewer, byte[] queryJson, out IntPtr json);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern PresenceResult presence_query_channels(IntPtr e, ulong viewer, byte[] queryJson, out IntPtr json);

        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern PresenceResult presence_add_typed_listener(IntPtr e, byte[] eventType, byte[] userId, PresenceEventInfoCallback cb, IntPtr userData, IntPtr userDataFree, out ulong id);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern PresenceResult presence_add_typed_delivery_listener(IntPtr e, PresenceEventInfoCallback cb, IntPtr userData, IntPtr userDataFree, out ulong id);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern PresenceResult presence_event_info_json(IntPtr info, out IntPtr json);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern PresenceResult presence_batch_new(out IntPtr batch);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern void presence_batch_free(IntPtr batch);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern PresenceResult presence_poll_batch(IntPtr e, ulong conn, uint max, IntPtr batch);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern PresenceResult presence_poll_batch_many(IntPtr e, IntPtr conns, uint count, uint maxEach, IntPtr batch);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern uint presence_batch_len(IntPtr batch);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern IntPtr presence_batch_events(IntPtr batch);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern PresenceResult presence_host_queue_new(IntPtr e, byte[] eventType, byte[] userId, out IntPtr queue);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern PresenceResult presence_host_queue_poll(IntPtr queue, uint max, IntPtr batch);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern void presence_host_queue_free(IntPtr queue);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern PresenceResult presence_batch_event_json(IntPtr batch, uint i, out IntPtr json);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern PresenceResult presence_remove_listener(IntPtr e, ulong id);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern PresenceResult presence_poll_events(IntPtr e, ulong conn, uint max, out IntPtr jsonArray);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern PresenceResult presence_pump(IntPtr e, out uint delivered);

        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern PresenceResult presence_tick(IntPtr e);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern PresenceResult presence_set_time(IntPtr e, long unixMs);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern PresenceResult presence_save(IntPtr e, byte[] path);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern PresenceResult presence_cluster_status(IntPtr e, out IntPtr json);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern PresenceResult presence_load(IntPtr e, byte[] path);

        /// <summary>NUL-terminated UTF-8 bytes; null stays null (a NULL pointer).</summary>
        internal static byte[] Utf8(string s)
        {
            if (s == null) return null;
            if (s.IndexOf('\0') >= 0)
                throw new PresenceException(PresenceResult.Invalid, "string argument contains a NUL character");
            int n;
            try { n = StrictUtf8.GetByteCount(s); }
            catch (EncoderFallbackException)
            {
                throw new PresenceException(PresenceResult.Utf8, "string argument contains a lone surrogate (no UTF-8 form)");
            }
            var bytes = new byte[n + 1];
            StrictUtf8.GetBytes(s, 0, s.Length, bytes, 0);
            return bytes;
        }

        // Throws on a lone surrogate instead of writing U+FFFD, which would merge distinct ids.
        private static readonly UTF8Encoding StrictUtf8 = new UTF8Encoding(false, true);

        /// <summary>Decode a NUL-terminated UTF-8 C string (NULL gives null).</summary>
        internal static unsafe string FromUtf8(IntPtr p)
        {
            if (p == IntPtr.Zero) return null;
            byte* bytes = (byte*)p;
            int len = Strlen(bytes);
            return len == 0 ? string.Empty : Encoding.UTF8.GetString(bytes, len);
        }

        /// <summary>Length of a NUL-terminated byte string.</summary>
        internal static unsafe int Strlen(byte* s)
        {
            int len = 0;
            while (s[len] != 0) len++;
            return len;
        }

        /// <summary>The ABI version this binding was written against; the library must be
        /// at least this (versions only add functions).</summary>
        internal const uint RequiredAbiVersion = 2;

        /// <summary>Throws when the loaded library is older than this binding.</summary>
        internal static void CheckAbi(uint linked, uint required)
        {
            if (linked < required)
                throw new PresenceException(PresenceResult.State,
                    "the Presence C# binding needs ABI version " + required +
                    " but the loaded presence library has ABI version " + linked +
                    "; ship the native library that came with this package");
        }

        /// <summary>Decode then release a string the engine handed over.</summary>
        internal static string TakeString(IntPtr p)
        {
            if (p == IntPtr.Zero) return null;
            try { return FromUtf8(p); }
            finally { presence_string_free(p); }
        }
    }

    /// <summary>
    /// Native UTF-8 strings to managed strings, converted once: user ids, channel ids and
    /// statuses repeat from event to event, so a hit answers the string made earlier
    /// without allocating. Open addressing over a fixed table of 4096 slots (bounded
    /// memory: when a string's 8 slots are taken, it replaces the one in its first slot);
    /// one thread at a time. A slot's key is a plain struct holding the string's length and
    /// first 16 bytes, read through a pointer, so a lookup of a short string (the common
    /// case) compares numbers without touching a per-key object. Under Mono, per event,
    /// every call that is not inlined and every loop iteration (each back edge polls for the
    /// GC) shows: the lookup is inlined into its caller, and a hit in its first slot of a
    /// string up to 16 bytes calls nothing and loops over nothing.
    /// </summary>
    internal sealed unsafe class Utf8Cache
    {
        private const int Bits = 12;
        private const int Size = 1 << Bits;
        private const int Probes = 8;
        private const int Inline = 16;
        private struct Key
        {
            internal ulong Head;
            internal ulong Next;
            /// <summary>The string's length in bytes plus one; 0 marks a free slot.</summary>
            internal int LengthPlusOne;
        }

        private readonly Key[] _keys = new Key[Size];
        /// <summary>The bytes past the first 16, per slot (null for shorter strings).</summary>
        private readonly byte[][] _rest = new byte[Size][];
        /// <summary>The string in each slot.</summary>
        private readonly string[] _values = new string[Size];

        // Unaligned multi-byte reads are only safe on 64-bit targets (32-bit ARM may fault).
        private static readonly bool WordReads = IntPtr.Size == 8;

        /// <summary>The string of <paramref name="length"/> UTF-8 bytes at <paramref name="p"/>
        /// (NULL gives null).</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        internal string Get(byte* p, uint length)
        {
            return p == null ? null : _values[Find(p, (int)length)];
        }

        /// <summary>The slot of the string of <paramref name="len"/> bytes at
        /// <paramref name="bytes"/>, converted and inserted if absent.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private int Find(byte* bytes, int len)
        {
            ulong head, next = 0;
            if (len >= 8 && WordReads)
            {
                head = *(ulong*)bytes;
                if (len >= 16) next = *(ulong*)(bytes + 8);
                else if (len > 8) next = Word(bytes + 8, len - 8);
            }
            else
            {
                head = Word(bytes, len);
                if (len > 8) next = Word(bytes + 8, len - 8);
            }
            ulong hash = (head * 0x9E3779B97F4A7C15UL) ^ next ^ (ulong)len;
            if (len > Inline) hash = HashRest(hash, bytes, len);
            // Multiplicative hashing: the top bits depend on every input bit.
            int home = (int)((hash * 0xff51afd7ed558ccdUL) >> (64 - Bits));
            fixed (Key* keys = _keys)
            {
                for (int probe = 0; probe < Probes; probe++)
                {
                    int slot = (home + probe) & (Size - 1);
                    Key* key = keys + slot;
                    if (key->LengthPlusOne == len + 1 && key->Head == head && key->Next == next &&
                        (len <= Inline || RestEqual(_rest[slot], bytes, len)))
                        return slot;
                    if (key->LengthPlusOne == 0) return Insert(slot, bytes, len, head, next);
                }
            }
            return Insert(home, bytes, len, head, next);
        }

        /// <summary>Up to 8 bytes (fewer when <paramref name="len"/> is smaller) as a
        /// number, zero-padded.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static ulong Word(byte* bytes, int len)
        {
            if (!WordReads) return WordByBytes(bytes, len);
            if (len >= 8) return *(ulong*)bytes;
            // Shorter: one 4-, one 2- and one 1-byte read at most, never past the end.
            ulong word = 0;
            int at = 0;
            if ((len & 4) != 0)
            {
                word = *(uint*)bytes;
                at = 4;
            }
            if ((len & 2) != 0)
            {
                word |= (ulong)*(ushort*)(bytes + at) << (8 * at);
                at += 2;
            }
            if ((len & 1) != 0) word |= (ulong)bytes[at] << (8 * at);
            return word;
        }

        private static ulong WordByBytes(byte* bytes, int len)
        {
            ulong word = 0;
            int n = len < 8 ? len : 8;
            for (int i = 0; i < n; i++) word |= (ulong)bytes[i] << (8 * i);
            return word;
        }

        private static ulong HashRest(ulong hash, byte* bytes, int len)
        {
            for (int i = Inline; i < len; i++) hash = (hash ^ bytes[i]) * 1099511628211UL;
            return hash;
        }

        private static bool RestEqual(byte[] rest, byte* bytes, int len)
        {
            for (int i = Inline; i < len; i++)
            {
                if (rest[i - Inline] != bytes[i]) return false;
            }
            return true;
        }

        private int Insert(int slot, byte* bytes, int len, ulong head, ulong next)
        {
            byte[] rest = null;
            if (len > Inline)
            {
                rest = new byte[len - Inline];
                for (int i = Inline; i < len; i++) rest[i - Inline] = bytes[i];
            }
            _keys[slot] = new Key { Head = head, Next = next, LengthPlusOne = len + 1 };
            _rest[slot] = rest;
            _values[slot] = len == 0 ? string.Empty : Encoding.UTF8.GetString(bytes, len);
            return slot;
        }
    }

    /// <summary>Owns a PresenceEventBatch*: ReleaseHandle calls presence_batch_free.</summary>
    internal sealed class PresenceBatchHandle : SafeHandle
    {
        internal PresenceBatchHandle() : base(IntPtr.Zero, true)
        {
            IntPtr raw;
            PresenceResult r = NativeMethods.presence_batch_new(out raw);
            if (r != PresenceResult.Ok) throw new PresenceException(r, "presence_batch_new failed");
            SetHandle(raw);
        }

        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }

        protected override bool ReleaseHandle()
        {
            NativeMethods.presence_batch_free(handle);
            return true;
        }
    }

    /// <summary>Owns a PresenceHostQueue* (every host event, unfiltered): ReleaseHandle
    /// calls presence_host_queue_free.</summary>
    internal sealed class PresenceHostQueueHandle : SafeHandle
    {
        internal PresenceHostQueueHandle(IntPtr queue) : base(IntPtr.Zero, true)
        {
            SetHandle(queue);
        }

        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }

        protected override bool ReleaseHandle()
        {
            NativeMethods.presence_host_queue_free(handle);
            return true;
        }
    }

    /// <summary>Owns a PresenceEngine*: ReleaseHandle calls presence_engine_free.</summary>
    internal sealed class PresenceEngineHandle : SafeHandle
    {
        internal PresenceEngineHandle(IntPtr engine) : base(IntPtr.Zero, true)
        {
            SetHandle(engine);
        }

        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }

        protected override bool ReleaseHandle()
        {
            NativeMethods.presence_engine_free(handle);
            return true;
        }
    }

    /// <summary>A failing engine call: the C result code and presence_last_error()'s message.</summary>
    public class PresenceException : Exception
    {
        public PresenceException(PresenceResult code, string message) : base(message)
        {
            Code = code;
        }

        /// <summary>The C result (never Ok).</summary>
        public PresenceResult Code { get; private set; }

        /// <summary>The C name of the code, e.g. "PRESENCE_ERR_NOT_FOUND".</summary>
        public string CodeName { get { return PresenceEngine.ResultName(Code); } }
    }
}
