// Events per second through PresenceEngine.Pump() with a C# handler, under Mono, against a
// same-run baseline: the raw P/Invoke path (presence_pump into a static
// [MonoPInvokeCallback] that only counts). Each figure is the best of interleaved rounds
// (binding, raw, binding, ...) so load on a shared machine hits both alike.
// Run: bash benches/bindings/run.sh (PRESENCE_BENCH_SCALE=0.1 shrinks it).
using System;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using AOT;
using Presence;

public static class PumpBench
{
    private static long s_rawCount;
    private static readonly PresenceEventCallback s_rawCallback = RawCallback;

    [MonoPInvokeCallback(typeof(PresenceEventCallback))]
    private static void RawCallback(IntPtr userData, IntPtr evt)
    {
        s_rawCount++;
    }

    private static readonly byte[] StatusA = NativeMethods.Utf8("a");
    private static readonly byte[] StatusB = NativeMethods.Utf8("b");

    /// <summary>Queue one presence event per user (a status flip) on the raw engine, untimed.</summary>
    private static void ProduceRaw(IntPtr engine, string[] ids, int round)
    {
        byte[] status = round % 2 == 0 ? StatusA : StatusB;
        foreach (string id in ids)
        {
            if (NativeMethods.presence_set_status(engine, NativeMethods.Utf8(id), status) != PresenceResult.Ok)
                throw new InvalidOperationException("set_status failed");
        }
    }

    public static int Main()
    {
        double scale = 1.0;
        string s = Environment.GetEnvironmentVariable("PRESENCE_BENCH_SCALE");
        if (!string.IsNullOrEmpty(s)) scale = double.Parse(s, CultureInfo.InvariantCulture);
        int users = Math.Max(100, (int)(2000 * scale));
        int rounds = Math.Max(3, (int)(20 * scale));

        // The binding: a C# handler reading the typed fields of every event.
        var engine = new PresenceEngine("{\"clock\":\"manual\"}");
        long handled = 0, online = 0;
        engine.UserPresenceChanged += e => { handled++; if (e.Online) online++; };
        // The raw path: one native listener, a static callback that counts.
        IntPtr raw;
        if (NativeMethods.presence_engine_new(NativeMethods.Utf8("{\"clock\":\"manual\",\"dispatch\":\"manual\"}"), out raw) != PresenceResult.Ok)
            throw new InvalidOperationException("engine_new failed");
        ulong rawListener;
        NativeMethods.presence_add_listener(raw, null, null, s_rawCallback, IntPtr.Zero, out rawListener);

        var ids = new string[users];
        for (int i = 0; i < users; i++)
        {
            ids[i] = "user-" + i;
            engine.UpsertUser("{\"id\":\"" + ids[i] + "\"}");
            NativeMethods.presence_upsert_user(raw, NativeMethods.Utf8("{\"id\":\"" + ids[i] + "\"}"));
        }
        engine.Pump();
        uint ignored;
        NativeMethods.presence_pump(raw, out ignored);

        double bestBinding = double.MaxValue, bestRaw = double.MaxValue;
        long bytes = 0, bindingEvents = 0;
        for (int round = 0; round < rounds; round++)
        {
            foreach (string id in ids) engine.SetStatus(id, round % 2 == 0 ? "a" : "b");
            long before = handled;
            long allocated = GC.GetAllocatedBytesForCurrentThread();
            var watch = Stopwatch.StartNew();
            engine.Pump();
            watch.Stop();
            bytes += GC.GetAllocatedBytesForCurrentThread() - allocated;
            long n = handled - before;
            bindingEvents += n;
            bestBinding = Math.Min(bestBinding, watch.Elapsed.TotalMilliseconds * 1e6 / n);

            ProduceRaw(raw, ids, round);
            long rawBefore = s_rawCount;
            watch = Stopwatch.StartNew();
            NativeMethods.presence_pump(raw, out ignored);
            watch.Stop();
            bestRaw = Math.Min(bestRaw, watch.Elapsed.TotalMilliseconds * 1e6 / (s_rawCount - rawBefore));
        }
        Console.WriteLine("Pump() with a C# handler, {0} events per round, best of {1} rounds", users, rounds);
        Console.WriteLine("| path | ns/event | events/s | managed bytes/event |");
        Console.WriteLine("|---|---|---|---|");
        Console.WriteLine("| PresenceEngine.Pump(), C# handler | {0:F0} | {1:N0} | {2:F0} |",
            bestBinding, 1e9 / bestBinding, (double)bytes / bindingEvents);
        Console.WriteLine("| raw presence_pump, static callback (baseline) | {0:F0} | {1:N0} | - |",
            bestRaw, 1e9 / bestRaw);
        Console.WriteLine("ratio binding/raw: {0:F2}", bestBinding / bestRaw);
        GC.KeepAlive(online);
        engine.Dispose();
        NativeMethods.presence_engine_free(raw);
        return 0;
    }
}
