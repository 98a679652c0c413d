// UPresenceSubsystem: one presence engine per game instance, ticked and pumped on the game
// thread every frame; its events are Blueprint-assignable multicast delegates.
#pragma once

#include "CoreMinimal.h"
#include "Subsystems/GameInstanceSubsystem.h"
#include "Tickable.h"
#include "PresenceEventAdapter.h"
#include "PresenceTypes.h"

#include <optional>

#include "PresenceSubsystem.generated.h"

DECLARE_DYNAMIC_MULTICAST_DELEGATE_FourParams(FPresenceUserPresenceChangedSignature,
    const FString&, UserId, bool, bOnline, const FString&, Status, FDateTime, LastActive);
DECLARE_DYNAMIC_MULTICAST_DELEGATE_OneParam(FPresenceUserUpdatedSignature, const FString&, UserId);
DECLARE_DYNAMIC_MULTICAST_DELEGATE_OneParam(FPresenceWatchingSignature, const FPresenceWatching&, Watching);
DECLARE_DYNAMIC_MULTICAST_DELEGATE_OneParam(FPresenceMembershipSignature, const FPresenceMembership&, Membership);
DECLARE_DYNAMIC_MULTICAST_DELEGATE_OneParam(FPresenceConnectionClosedSignature, const FPresenceConnectionClosed&, Closed);

/**
 * Owns a presence engine for the life of the game instance. The engine runs with
 * "dispatch":"manual": every delegate below is broadcast on the game thread from Tick(),
 * which first applies what is due (timeouts, offline grace, last_active refresh) and then
 * delivers the frame's events. Every call is non-throwing; a failing call answers
 * false (or 0) and leaves the engine's message in GetLastError().
 */
UCLASS()
class PRESENCE_API UPresenceSubsystem : public UGameInstanceSubsystem, public FTickableGameObject, public IPresenceEventSink
{
    GENERATED_BODY()

public:
    virtual void Initialize(FSubsystemCollectionBase& Collection) override;
    virtual void Deinitialize() override;

    // FTickableGameObject: one engine frame per game frame, also while paused.
    virtual void Tick(float DeltaTime) override;
    virtual TStatId GetStatId() const override;
    virtual ETickableTickType GetTickableTickType() const override { return ETickableTickType::Always; }
    virtual bool IsTickableWhenPaused() const override { return true; }

    /** A user's presence changed (online, status, invisible in the host's own view). */
    UPROPERTY(BlueprintAssignable, Category = "Presence")
    FPresenceUserPresenceChangedSignature OnUserPresenceChanged;

    /** A user's custom fields changed. */
    UPROPERTY(BlueprintAssignable, Category = "Presence")
    FPresenceUserUpdatedSignature OnUserUpdated;

    /** A visible user started or stopped watching a channel. */
    UPROPERTY(BlueprintAssignable, Category = "Presence")
    FPresenceWatchingSignature OnUserWatching;

    /** A channel gained or lost a member. */
    UPROPERTY(BlueprintAssignable, Category = "Presence")
    FPresenceMembershipSignature OnMemberChanged;

    /** A connection ended (disconnect, timeout, slow_consumer, node_lost). */
    UPROPERTY(BlueprintAssignable, Category = "Presence")
    FPresenceConnectionClosedSignature OnConnectionClosed;

    /** Opens a connection for a user (created with only its id if unknown); 0 on failure. */
    UFUNCTION(BlueprintCallable, Category = "Presence")
    int64 Connect(const FString& UserId);

    UFUNCTION(BlueprintCallable, Category = "Presence")
    bool Disconnect(int64 ConnectionId);

    UFUNCTION(BlueprintCallable, Category = "Presence")
    bool Heartbeat(int64 ConnectionId);

    /** An empty Status clears it. */
    UFUNCTION(BlueprintCallable, Category = "Presence")
    bool SetStatus(const FString& UserId, const FString& Status);

    UFUNCTION(BlueprintCallable, Category = "Presence")
    bool SetInvisible(const FString& UserId, bool bInvisible);

    /** Creates or updates the channel "Type:Id" and adds Members. */
    UFUNCTION(BlueprintCallable, Category = "Presence")
    bool UpsertChannel(const FString& Type, const FString& Id, const TArray<FString>& Members);

    UFUNCTION(BlueprintCallable, Category = "Presence")
    bool AddMembers(const FString& ChannelId, const TArray<FString>& UserIds);

    UFUNCTION(BlueprintCallable, Category = "Presence")
    bool RemoveMembers(const FString& ChannelId, const TArray<FString>& UserIds);

    /** Watches a channel from a connection (subscribing to its members' presence). */
    UFUNCTION(BlueprintCallable, Category = "Presence")
    bool WatchChannel(int64 ConnectionId, const FString& ChannelId, FPresenceChannelState& OutState);

    UFUNCTION(BlueprintCallable, Category = "Presence")
    bool StopWatching(int64 ConnectionId, const FString& ChannelId);

    /** The user as Viewer sees it (0: the host, own view). */
    UFUNCTION(BlueprintCallable, Category = "Presence")
    bool GetUser(int64 Viewer, const FString& UserId, FPresenceUser& OutUser);

    /** Users matching a query in the engine's filter syntax, as Viewer sees them. */
    UFUNCTION(BlueprintCallable, Category = "Presence")
    bool QueryUsers(int64 Viewer, const FString& QueryJson, TArray<FPresenceUser>& OutUsers);

    /** The engine's message for the last failing call on this subsystem. */
    UFUNCTION(BlueprintPure, Category = "Presence")
    FString GetLastError() const { return LastError; }

    /** The engine itself, for calls this subsystem does not wrap (null before Initialize). */
    presence::Engine* GetEngine() { return Engine ? &*Engine : nullptr; }

protected:
    // IPresenceEventSink
    virtual void HandleUserPresenceChanged(const FPresenceChange& Change) override;
    virtual void HandleUserUpdated(const FString& UserId) override;
    virtual void HandleUserWatching(const FPresenceWatching& Watching) override;
    virtual void HandleMemberChanged(const FPresenceMembership& Membership) override;
    virtual void HandleConnectionClosed(const FPresenceConnectionClosed& Closed) override;

private:
    /** Records a failed call's message; answers whether the call succeeded. */
    template <typename T>
    bool Succeeded(const presence::Result<T>& Result);

    std::optional<presence::Engine> Engine;
    presence::Listener HostListener;
    FString LastError;
};
