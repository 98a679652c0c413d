// Runs examples/csharp/QuickStart.cs like Unity would: Start, a few Update
// frames, OnDestroy (private messages, called by reflection), and checks what
// it logged.
using System;
using System.IO;
using System.Reflection;

public static class QuickStartDriver
{
    private static void Send(object behaviour, string message)
    {
        MethodInfo m = behaviour.GetType().GetMethod(message, BindingFlags.Instance | BindingFlags.NonPublic | BindingFlags.Public);
        m.Invoke(behaviour, null);
    }

    public static int Main()
    {
        var log = new StringWriter();
        TextWriter stdout = Console.Out;
        Console.SetOut(log);
        var quickStart = new PresenceQuickStart();
        Send(quickStart, "Start");
        for (int frame = 0; frame < 3; frame++) Send(quickStart, "Update");
        Send(quickStart, "OnDestroy");
        Console.SetOut(stdout);
        string text = log.ToString();
        Console.Write(text);
        bool ok = text.Contains("me is online") && text.Contains("friend is online") &&
                  text.Contains("friend online: True") && text.Contains("my feed: user.presence.changed friend");
        Console.WriteLine(ok ? "quickstart: ok" : "quickstart: FAILED (missing log lines)");
        return ok ? 0 : 1;
    }
}
