// Events per second through PresenceEngine.Pump() with a C# handler, under Mono, against a
// same-run baseline: the raw P/Invoke path (presence_pump into a typed listener whose
// static [MonoPInvokeCallback] only counts). Each figure is the best of interleaved rounds
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
    private static readonly PresenceEventInfoCallback s_rawCallback = RawCallback;

    [MonoPInvokeCallback(typeof(PresenceEventInfoCallback))]
    private static void RawCallback(IntPtr userData, IntPtr info)
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
        // Room in the watcher's queue for a whole round (the PollEvents row).
        var engine = new PresenceEngine("{\"clock\":\"manual\",\"connection_queue_capacity\":" + 2 * users + "}");
        long handled = 0, online = 0;
        engine.UserPresenceChanged += e => { handled++; if (e.Online) online++; };
        // The raw path: one native listener, a static callback that counts.
        IntPtr raw;
        if (NativeMethods.presence_engine_new(NativeMethods.Utf8("{\"clock\":\"manual\",\"dispatch\":\"manual\"}"), out raw) != PresenceResult.Ok)
            throw new InvalidOperationException("engine_new failed");
        ulong rawListener;
        NativeMethods.presence_add_typed_listener(raw, null, null, s_rawCallback, IntPtr.Zero, IntPtr.Zero, out rawListener);

        var ids = new string[users];
        for (int i = 0; i < users; i++)
        {
            ids[i] = "user-" + i;
            engine.UpsertUser("{\"id\":\"" + ids[i] + "\"}");
            NativeMethods.presence_upsert_user(raw, NativeMethods.Utf8("{\"id\":\"" + ids[i] + "\"}"));
        }
        // Warm-up: the first events about each user create its registry object and fill the
        // string cache; steady state is what a game sees frame after frame.
        foreach (string id in ids) engine.SetStatus(id, "warm");
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
        // PollEvents: one connection subscribed to every user drains its queue each round.
        engine.UpsertChannel("bench", "all", ids);
        PresenceConnection watcher = engine.Connect("watcher");
        watcher.WatchChannel("bench:all");
        watcher.PollEvents(uint.MaxValue);
        double bestPoll = double.MaxValue;
        long pollBytes = 0, polled = 0;
        for (int round = 0; round < rounds; round++)
        {
            foreach (string id in ids) engine.SetStatus(id, round % 2 == 0 ? "c" : "d");
            engine.Pump();
            long allocated = GC.GetAllocatedBytesForCurrentThread();
            var watch = Stopwatch.StartNew();
            int n = watcher.PollEvents(uint.MaxValue).Count;
            watch.Stop();
            pollBytes += GC.GetAllocatedBytesForCurrentThread() - allocated;
            polled += n;
            bestPoll = Math.Min(bestPoll, watch.Elapsed.TotalMilliseconds * 1e6 / n);
        }
        Console.WriteLine("C# under Mono, {0} events per round, best of {1} rounds", users, rounds);
        Console.WriteLine("| path | ns/event | events/s | managed bytes/event |");
        Console.WriteLine("|---|---|---|---|");
        Console.WriteLine("| PresenceEngine.Pump(), C# handler | {0:F0} | {1:N0} | {2:F0} |",
            bestBinding, 1e9 / bestBinding, (double)bytes / bindingEvents);
        Console.WriteLine("| raw presence_pump, typed listener, static callback (baseline) | {0:F0} | {1:N0} | - |",
            bestRaw, 1e9 / bestRaw);

        Console.WriteLine("| PresenceConnection.PollEvents() (presence_poll_batch) | {0:F0} | {1:N0} | {2:F0} |",
            bestPoll, 1e9 / bestPoll, (double)pollBytes / polled);
        Console.WriteLine("ratio Pump()/raw: {0:F2}", bestBinding / bestRaw);
        GC.KeepAlive(online);
        engine.Dispose();
        NativeMethods.presence_engine_free(raw);
        return 0;
    }
}
