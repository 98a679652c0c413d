// Just enough of UnityEngine for mcs to compile examples/csharp/QuickStart.cs
// outside Unity; QuickStartDriver calls its messages the way Unity does
// (by reflection). With -define:UNITY_5_3_OR_NEWER it also stands in for
// Unity's AOT.MonoPInvokeCallbackAttribute (a compile check of the Unity path).
using System;

namespace UnityEngine
{
    public class MonoBehaviour
    {
    }

    public static class Debug
    {
        public static void Log(object message)
        {
            Console.WriteLine(message);
        }
    }
}

#if UNITY_5_3_OR_NEWER
namespace AOT
{
    [AttributeUsage(AttributeTargets.Method)]
    public sealed class MonoPInvokeCallbackAttribute : Attribute
    {
        public MonoPInvokeCallbackAttribute(Type type) { }
    }
}
#endif
