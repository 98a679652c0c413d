// Unity defines AOT.MonoPInvokeCallbackAttribute (UnityEngine.CoreModule); IL2CPP
// needs it on every static method that native code calls back. Outside Unity
// (Mono, .NET) we declare an equivalent one so the same sources compile.
#if !UNITY_5_3_OR_NEWER
namespace AOT
{
    [System.AttributeUsage(System.AttributeTargets.Method)]
    internal sealed class MonoPInvokeCallbackAttribute : System.Attribute
    {
        public MonoPInvokeCallbackAttribute(System.Type type) { Type = type; }
        public System.Type Type { get; private set; }
    }
}
#endif
