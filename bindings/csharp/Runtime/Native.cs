// P/Invoke declarations of the engine's C ABI (include/presence.h).
//
// Portable marshalling only (Mono, IL2CPP, .NET): strings go in as NUL-terminated
// UTF-8 byte[] (null -> NULL) and come out as IntPtr decoded here in one pass over the
// native bytes (no per-byte marshalling calls, no intermediate array); C bool is
// marshalled as one byte; callbacks are a plain delegate type, never delegate*.
using System;
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

    /// <summary>PresenceEventCallback: void (*)(void *user_data, const PresenceEvent *event).</summary>
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    public delegate void PresenceEventCallback(IntPtr userData, IntPtr evt);

    /// <summary>struct PresenceEvent, as laid out in C.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeEvent
    {
        public IntPtr Type;
        public ulong Seq;
        public ulong ConnectionId;
        public IntPtr UserId;
        public IntPtr Cid;
        public byte Online;
        public IntPtr Json;
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

        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern PresenceResult presence_add_listener(IntPtr e, byte[] eventType, byte[] userId, PresenceEventCallback cb, IntPtr userData, out ulong id);
        [DllImport(Lib, CallingConvention = Cdecl)] internal static extern PresenceResult presence_add_delivery_listener(IntPtr e, PresenceEventCallback cb, IntPtr userData, out ulong id);
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
            int n = Encoding.UTF8.GetByteCount(s);
            var bytes = new byte[n + 1];
            Encoding.UTF8.GetBytes(s, 0, s.Length, bytes, 0);
            return bytes;
        }

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
        internal const uint RequiredAbiVersion = 1;

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
